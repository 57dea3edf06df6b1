import AMQP
import Foundation
import Synchronization
import Testing
import TestSupport

/// The throwaway RabbitMQ node that deploy/test.sh starts for the tests.
enum TestBroker {
    /// `AMQP_TEST_URL`, set by deploy/test.sh.
    static var url: String {
        get throws {
            try #require(
                ProcessInfo.processInfo.environment["AMQP_TEST_URL"],
                "AMQP_TEST_URL is not set: run the tests with deploy/test.sh, which starts a broker")
        }
    }

    static func connect(heartbeat: Int? = nil, frameMax: Int? = nil) async throws -> AMQPConnection {
        var configuration = try AMQPConnection.Configuration(url: url)
        if let heartbeat { configuration.heartbeat = .seconds(heartbeat) }
        if let frameMax { configuration.frameMax = frameMax }
        return try await AMQPConnection.connect(configuration)
    }

    /// A queue or exchange name no other test uses.
    static func uniqueName(_ prefix: String) -> String {
        "test.\(prefix).\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Runs deploy/rabbitmq-node.sh with `arguments` (e.g. `restart`, `ctl stop_app`).
    @discardableResult
    static func control(_ arguments: String...) async throws -> String {
        let script = try #require(
            ProcessInfo.processInfo.environment["AMQP_TEST_BROKER"], "AMQP_TEST_BROKER is not set")
        return try await runControlScript(script, arguments)
    }

    /// The broker's process id, for freezing it with SIGSTOP.
    static func pid() throws -> pid_t {
        let directory = try #require(ProcessInfo.processInfo.environment["BROKER_DIR"])
        let text = try String(contentsOfFile: directory + "/rabbitmq.pid", encoding: .utf8)
        return try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}

/// What a test undoes when it ends (connections closed, queues deleted), awaited in reverse order
/// of `add`, whether the test's body returned or threw.
final class Cleanup: Sendable {
    private let steps = Mutex<[@Sendable () async -> Void]>([])

    func add(_ step: @escaping @Sendable () async -> Void) {
        steps.withLock { $0.append(step) }
    }

    /// A connection to the test broker, closed when the test ends.
    func connect(heartbeat: Int? = nil, frameMax: Int? = nil) async throws -> AMQPConnection {
        let connection = try await TestBroker.connect(heartbeat: heartbeat, frameMax: frameMax)
        add { await connection.close() }
        return connection
    }

    fileprivate func run() async {
        for step in steps.withLock({ $0 }).reversed() { await step() }
    }
}

/// Runs `body` and then, awaited, every cleanup step it added.
func withCleanup(_ body: (Cleanup) async throws -> Void) async throws {
    let cleanup = Cleanup()
    do {
        try await body(cleanup)
    } catch {
        await cleanup.run()
        throw error
    }
    await cleanup.run()
}
