import BlitlineBridge
import Foundation
import Testing
import Yams

/// The files under `deploy/`, read from the repository this test was compiled from.
enum DeployFolder {
    /// The repository root: this file is `Tests/DeployTests/DeployFolder.swift`.
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A path relative to the repository root.
    static func url(_ path: String) -> URL {
        repositoryRoot.appendingPathComponent(path)
    }

    static func exists(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: url(path).path)
    }

    static func text(_ path: String) throws -> String {
        try String(contentsOf: url(path), encoding: .utf8)
    }

    /// The single YAML document of a file, as a node tree (tags resolved as YAML 1.1 does, which is
    /// what Docker Compose and Kubernetes read).
    static func yaml(_ path: String) throws -> Node {
        try #require(try Yams.compose(yaml: text(path)), "\(path) holds no YAML document")
    }

    /// Every `.yml` and `.yaml` file under `deploy/`, relative to the repository root, sorted.
    static func yamlFiles() -> [String] {
        let deploy = url("deploy")
        guard let walker = FileManager.default.enumerator(at: deploy, includingPropertiesForKeys: nil) else {
            return []
        }
        var files: [String] = []
        for case let file as URL in walker where ["yml", "yaml"].contains(file.pathExtension) {
            files.append("deploy/" + file.path.dropFirst(deploy.path.count + 1))
        }
        return files.sorted()
    }
}

/// The bridge's settings as `blitline-bridge --help` lists them, which deployment files must name
/// and whose defaults they restate.
enum BridgeSettings {
    /// Variable → default as help shows it; `nil` where the setting has none.
    static let defaults: [String: String?] = {
        var defaults: [String: String?] = [:]
        var current: String?
        for line in BridgeConfiguration.helpText.split(separator: "\n") {
            if line.hasPrefix("  "), !line.hasPrefix("   "), let comma = line.firstIndex(of: ",") {
                let name = line.dropFirst(2)[..<comma]
                if !name.isEmpty, name.allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }) {
                    current = String(name)
                }
            } else if let variable = current, line.hasPrefix("      Default: ") {
                let text = String(line.dropFirst("      Default: ".count))
                defaults[variable] = .some(text == "none" ? nil : text)
                current = nil
            }
        }
        return defaults
    }()

    static var names: Set<String> { Set(defaults.keys) }

    /// What the bridge makes of `environment` at start (no flags), once the operator has replaced
    /// the placeholders marked `REPLACE_ME`; as shipped, with them, start-up must refuse it.
    static func configuration(
        _ environment: [String: String], sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> BridgeConfiguration {
        if environment.values.contains(where: { $0.contains("REPLACE_ME") }) {
            #expect(
                throws: ConfigurationError.self, "a placeholder left in place stops start-up",
                sourceLocation: sourceLocation
            ) { try BridgeConfiguration(environment: environment, arguments: []) }
        }
        let replaced = environment.mapValues { $0.replacingOccurrences(of: "REPLACE_ME", with: "real-value") }
        return try BridgeConfiguration(environment: replaced, arguments: [])
    }
}

extension Node {
    /// The node at a path of mapping keys.
    subscript(path keys: String...) -> Node? {
        var node: Node? = self
        for key in keys { node = node?[key] }
        return node
    }

    /// A mapping's keys in document order.
    var keys: [String] {
        mapping?.compactMap { $0.key.string } ?? []
    }

    /// A mapping of scalars as strings; a `KEY=value` list (Compose's other form) too.
    var stringPairs: [String: String] {
        if let mapping {
            var pairs: [String: String] = [:]
            for (key, value) in mapping {
                if let key = key.string { pairs[key] = value.string ?? "" }
            }
            return pairs
        }
        var pairs: [String: String] = [:]
        for item in array() {
            guard let text = item.string else { continue }
            let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            pairs[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return pairs
    }

    /// Whether this is a scalar that YAML reads as a string (quoted, or plain text that is no
    /// number, boolean or null).
    var isString: Bool {
        scalar != nil && tag.description == Tag.Name.str.rawValue
    }
}

/// A duration as Docker Compose, Kubernetes and systemd write them: `30`, `30s`, `1m30s`, `500ms`.
func durationSeconds(_ text: String) -> Double? {
    if let seconds = Double(text) { return seconds }
    let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("us", 0.000_001), ("h", 3600), ("m", 60), ("s", 1)]
    var rest = Substring(text)
    var total = 0.0
    while !rest.isEmpty {
        let digits = rest.prefix { $0.isNumber || $0 == "." }
        guard let number = Double(digits) else { return nil }
        rest = rest.dropFirst(digits.count)
        guard let unit = units.first(where: { rest.hasPrefix($0.suffix) }) else { return nil }
        rest = rest.dropFirst(unit.suffix.count)
        total += number * unit.seconds
    }
    return text.isEmpty ? nil : total
}

/// `Duration` in seconds, for comparisons with the durations written in deployment files.
func seconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) + Double(attoseconds) / 1e18
}

/// The port of a `host:port` listen address, as the bridge reads `LISTEN_ADDRESS`.
func listenPort(_ address: String) throws -> Int {
    try BridgeSettings.configuration(["LISTEN_ADDRESS": address]).listenPort
}

@Suite struct DeployFolderTests {
    @Test func everyYAMLFileParses() throws {
        let files = DeployFolder.yamlFiles()
        #expect(files.contains("deploy/docker-compose.yml"))
        #expect(files.contains("deploy/kubernetes/deployment.yaml"))
        for file in files {
            // One document per file: compose throws on a syntax error and on a second document.
            let document = try Yams.compose(yaml: DeployFolder.text(file))
            #expect(document?.mapping != nil, "\(file): a mapping at the top expected")
        }
    }

    @Test func theSettingsListIsReadFromHelp() {
        // Guards the help parsing the other checks rely on.
        #expect(BridgeSettings.names.count >= 18)
        #expect(BridgeSettings.defaults["LISTEN_ADDRESS"] == .some("0.0.0.0:8080"))
        #expect(BridgeSettings.defaults["SHUTDOWN_TIMEOUT"] == .some("25s"))
        #expect(BridgeSettings.defaults["POSTBACK_SECRET"] == .some(nil))
    }

    @Test func durationsAreReadAsTheToolsReadThem() {
        #expect(durationSeconds("30") == 30)
        #expect(durationSeconds("30s") == 30)
        #expect(durationSeconds("1m30s") == 90)
        #expect(durationSeconds("250ms") == 0.25)
        #expect(durationSeconds("soon") == nil)
    }
}
