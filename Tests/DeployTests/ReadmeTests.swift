import Foundation
import Testing

/// The README is the front door: it must name every setting with the default the bridge applies,
/// every metric the bridge exports, and the two commands CI and users run.
@Suite struct ReadmeTests {
    private static func readme() throws -> String { try DeployFolder.text("README.md") }

    @Test func everySettingHasARowWithItsDefault() throws {
        let rows = try Self.readme().split(separator: "\n").filter { $0.hasPrefix("| `") }
        for (name, value) in BridgeSettings.defaults {
            let row = rows.first { $0.hasPrefix("| `\(name)` |") }
            #expect(row != nil, "README has no settings row for \(name)")
            guard let row, let value else { continue }
            #expect(row.contains("`\(value)`"), "README's row for \(name) does not show its default \(value)")
        }
    }

    @Test func everyMetricIsDocumented() async throws {
        let readme = try Self.readme()
        let names = try await RunningBridge.exportedMetricNames()
        #expect(names.contains("blitline_bridge_requests_received_total"), "the bridge's /metrics was not read")
        for name in names {
            #expect(readme.contains("| `\(name)` |"), "README's metrics table lacks \(name)")
        }
    }

    @Test func theTwoCommandsAreTheOnesThatExist() throws {
        let readme = try Self.readme()
        for command in ["deploy/demo.sh", "deploy/test.sh"] {
            #expect(readme.contains(command))
            #expect(FileManager.default.isExecutableFile(atPath: DeployFolder.url(command).path), "\(command) is not executable")
        }
        #expect(try DeployFolder.text(".ci/run").contains("deploy/test.sh"), "CI does not run the README's test command")
    }
}
