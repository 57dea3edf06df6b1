import Foundation
import TestSupport

/// A broker user of a test's own for its bridge, with every permission until `forbidDeclaring`.
///
/// A bridge declares a queue of its own again when a publish finds it gone. A test that needs the
/// broker to keep returning what the bridge publishes to a queue deletes it and takes from the
/// bridge's user the right to declare it (`configure`); the test itself, as `guest`, still may.
struct BridgeBrokerUser {
    let name = "bridge-\(TestEnvironment.uniqueSuffix())"
    private static let password = "bridge-password"

    /// Runs `body` with a new user, deleted when it returns.
    static func with(_ body: (BridgeBrokerUser) async throws -> Void) async throws {
        let user = BridgeBrokerUser()
        try await TestEnvironment.controlBroker("ctl", "add_user", user.name, password)
        try await TestEnvironment.controlBroker("ctl", "set_permissions", "-p", "/", user.name, ".*", ".*", ".*")
        try await withUndo({ _ = try? await TestEnvironment.controlBroker("ctl", "delete_user", user.name) }) {
            try await body(user)
        }
    }

    /// The test broker's URL, logging in as this user.
    var url: String {
        get throws { try TestEnvironment.brokerURL.replacingOccurrences(of: "guest:guest@", with: "\(name):\(Self.password)@") }
    }

    /// From now on the user may declare anything but `queues`.
    func forbidDeclaring(_ queues: [String]) async throws {
        let names = queues.map { NSRegularExpression.escapedPattern(for: $0) }.joined(separator: "|")
        try await TestEnvironment.controlBroker("ctl", "set_permissions", "-p", "/", name, "^(?!(\(names))$).*", ".*", ".*")
    }
}
