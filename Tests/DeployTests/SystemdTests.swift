import BlitlineBridge
import Foundation
import Testing

/// `deploy/systemd/`: the unit file and the environment file it reads.
@Suite struct SystemdTests {
    static let unitPath = "deploy/systemd/blitline-bridge.service"
    static let environmentPath = "deploy/systemd/blitline-bridge.env.example"

    /// `[Section]` → key → values (a key may repeat), as systemd reads a unit file.
    static func unit() throws -> [String: [String: [String]]] {
        var sections: [String: [String: [String]]] = [:]
        var section = ""
        for line in try DeployFolder.text(unitPath).split(separator: "\n") {
            let line = line.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
                continue
            }
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            try #require(parts.count == 2, "not a key=value line: \(line)")
            sections[section, default: [:]][String(parts[0]), default: []].append(String(parts[1]))
        }
        return sections
    }

    /// The environment file's assignments: `KEY=value` lines, and with `uncommenting`, the `#KEY=value`
    /// lines too (prose comments have a space after `#`).
    static func environment(uncommenting: Bool) throws -> (values: [String: String], commented: Set<String>) {
        var values: [String: String] = [:]
        var commented: Set<String> = []
        for line in try DeployFolder.text(environmentPath).split(separator: "\n") {
            var assignment = Substring(line)
            let isCommented = assignment.hasPrefix("#")
            if isCommented { assignment = assignment.dropFirst() }
            guard let equals = assignment.firstIndex(of: "="),
                let first = assignment.first, first.isUppercase,
                assignment[..<equals].allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" })
            else { continue }
            let name = String(assignment[..<equals])
            #expect(values[name] == nil, "\(name) appears twice")
            if isCommented { commented.insert(name) }
            if !isCommented || uncommenting {
                values[name] = String(assignment[assignment.index(after: equals)...])
            }
        }
        return (values, commented)
    }

    /// The install commands: the indented block under README's "### systemd", and the `#   ` lines
    /// at the head of the unit file.
    static func installSteps() throws -> (readme: [String], unitFile: [String]) {
        let readme = try DeployFolder.text("README.md").components(separatedBy: "\n### systemd\n")
        try #require(readme.count == 2, "README has no single \"### systemd\" section")
        let readmeSteps = readme[1].split(separator: "\n", omittingEmptySubsequences: false)
            .drop { !$0.hasPrefix("    ") }.prefix { $0.hasPrefix("    ") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let unitSteps = try DeployFolder.text(unitPath).split(separator: "\n").prefix { $0.hasPrefix("#") }
            .filter { $0.hasPrefix("#   ") }.map { $0.dropFirst().trimmingCharacters(in: .whitespaces) }
        return (readmeSteps, unitSteps)
    }

    func single(_ unit: [String: [String: [String]]], _ section: String, _ key: String) throws -> String {
        let values = unit[section]?[key] ?? []
        try #require(values.count == 1, "[\(section)] \(key) should be set once")
        return values[0]
    }

    @Test func unitRunsTheBridgeAsItsOwnUserFromTheEnvironmentFile() throws {
        let unit = try Self.unit()
        #expect(try single(unit, "Service", "Type") == "simple")
        #expect(try single(unit, "Service", "ExecStart") == "/usr/local/bin/blitline-bridge")
        let user = try single(unit, "Service", "User")
        #expect(user == "blitline-bridge" && user != "root")
        let environmentFile = try single(unit, "Service", "EnvironmentFile")
        #expect(environmentFile == "/etc/blitline-bridge/blitline-bridge.env")
        #expect(Self.environmentPath.hasSuffix("/" + (environmentFile as NSString).lastPathComponent + ".example"))
        #expect(try single(unit, "Service", "Restart") == "on-failure")
        #expect(try single(unit, "Service", "RestartSec") == "5")
        #expect(try single(unit, "Install", "WantedBy") == "multi-user.target")
        for key in ["After", "Wants"] {
            let units = (unit["Unit"]?[key] ?? []).flatMap { $0.split(separator: " ") }
            #expect(units.contains("network-online.target"), "\(key)")
            #expect(units.contains("rabbitmq-server.service"), "\(key)")
        }
    }

    @Test func installStepsBuildTheBinaryWithTheSwiftRuntimeLinkedInAndInstallWhatTheUnitRuns() throws {
        let steps = try Self.installSteps()
        #expect(!steps.readme.isEmpty)
        #expect(steps.readme == steps.unitFile, "README's systemd steps and those in the unit file's header differ")
        // Without --static-swift-stdlib the binary loads libswiftCore and Foundation from the
        // toolchain's folder, which a server running the unit need not have.
        let build = try #require(steps.readme.firstIndex { $0.hasPrefix("swift build ") }, "no build step")
        let words = steps.readme[build].split(separator: " ").map(String.init)
        #expect(words.contains("--static-swift-stdlib"), "\(steps.readme[build])")
        #expect(zip(words, words.dropFirst()).contains { $0 == ("-c", "release") }, "\(steps.readme[build])")
        #expect(zip(words, words.dropFirst()).contains { $0 == ("--product", "blitline-bridge") }, "\(steps.readme[build])")
        let install = try #require(
            steps.readme.firstIndex { $0.hasPrefix("install ") && $0.contains(".build/release/blitline-bridge ") },
            "no step installs .build/release/blitline-bridge")
        #expect(build < install)
        let execStart = try single(Self.unit(), "Service", "ExecStart")
        let target = try #require(steps.readme[install].split(separator: " ").last.map(String.init))
        #expect(target == execStart || target + "blitline-bridge" == execStart, "installed to \(target), run from \(execStart)")
    }

    @Test func unitStopsWithSIGTERMAndWaitsLongerThanTheShutdownTimeout() throws {
        let unit = try Self.unit()
        #expect(try single(unit, "Service", "KillSignal") == "SIGTERM")
        let timeout = try #require(durationSeconds(try single(unit, "Service", "TimeoutStopSec")))
        #expect(timeout > seconds(BridgeConfiguration().shutdownTimeout))
        let configured = try BridgeSettings.configuration(Self.environment(uncommenting: false).values).shutdownTimeout
        #expect(timeout > seconds(configured))
    }

    @Test func unitIsHardened() throws {
        let unit = try Self.unit()
        for (key, value) in [
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        ] {
            #expect(try single(unit, "Service", key) == value, "\(key)")
        }
    }

    @Test func environmentFileListsEverySettingWithItsDefault() throws {
        let (values, commented) = try Self.environment(uncommenting: true)
        #expect(Set(values.keys) == BridgeSettings.names, "every setting, once")
        for (name, value) in values where commented.contains(name) {
            // A commented line shows the default, or where there is none an example or nothing.
            if let defaultValue = BridgeSettings.defaults[name], let defaultValue {
                #expect(value == defaultValue, "\(name): the default is \(defaultValue)")
            }
        }
        for secret in ["BLITLINE_APPLICATION_ID", "POSTBACK_SECRET"] {
            #expect(values[secret]?.contains("REPLACE_ME") == true, "\(secret) should be a marked placeholder")
        }
    }

    @Test func environmentFileIsAValidConfigurationAsShippedAndUncommented() throws {
        let shipped = try BridgeSettings.configuration(Self.environment(uncommenting: false).values)
        #expect(!shipped.usesPostbacks, "as shipped: polling mode, which needs no public address")
        let uncommented = try BridgeSettings.configuration(Self.environment(uncommenting: true).values)
        #expect(uncommented.usesPostbacks)
    }
}
