import BlitlineBridge
import Foundation
import Testing
import Yams

/// `deploy/docker-compose.yml`: the broker, the simulator and the bridge agree with each other and
/// with the bridge's settings.
@Suite struct ComposeTests {
    let services: Node
    let defaults = BridgeConfiguration()

    init() throws {
        let compose = try DeployFolder.yaml("deploy/docker-compose.yml")
        services = try #require(compose["services"])
    }

    func service(_ name: String) throws -> Node {
        try #require(services[name], "no service \(name)")
    }

    /// Compose's interpolation with nothing set: `${NAME:-default}` and `${NAME-default}` give the
    /// default, `${NAME}` nothing, `$$` a dollar.
    static func interpolated(_ text: String) -> String {
        var result = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            rest = rest[dollar...].dropFirst()
            if rest.hasPrefix("$") {
                result += "$"
                rest = rest.dropFirst()
            } else if rest.hasPrefix("{"), let close = rest.firstIndex(of: "}") {
                let expression = rest[rest.index(after: rest.startIndex)..<close]
                if let range = expression.range(of: ":-") ?? expression.range(of: "-") {
                    result += expression[range.upperBound...]
                }
                rest = rest[rest.index(after: close)...]
            }
        }
        return result + rest
    }

    /// The container side of each `ports:` entry (`"8080:8080"`, `"127.0.0.1:8080:8080/tcp"`).
    func containerPorts(_ service: Node) -> [Int] {
        service["ports"]?.array().compactMap { entry in
            entry.string?.split(separator: ":").last?.split(separator: "/").first.flatMap { Int($0) }
        } ?? []
    }

    /// The URL in a `healthcheck.test` command.
    func healthCheckURL(_ service: Node) throws -> URLComponents {
        let test = service[path: "healthcheck", "test"]?.array().compactMap(\.string) ?? []
        let url = try #require(test.first { $0.hasPrefix("http://") }, "no URL in \(test)")
        return try #require(URLComponents(string: url))
    }

    func bridgeEnvironment() throws -> [String: String] {
        try service("blitline-bridge")["environment"]?.stringPairs.mapValues(Self.interpolated) ?? [:]
    }

    @Test func runsTheBrokerWithItsUITheSimulatorAndTheBridge() throws {
        #expect(Set(services.keys) == ["rabbitmq", "blitline-simulator", "blitline-bridge"])
        let rabbitmq = try service("rabbitmq")
        let image = try #require(rabbitmq["image"]?.string)
        #expect(image.hasPrefix("rabbitmq:") && image.hasSuffix("-management"))
        #expect(Set(containerPorts(rabbitmq)).isSuperset(of: [5672, 15672]))
        let test = rabbitmq[path: "healthcheck", "test"]?.array().compactMap(\.string) ?? []
        #expect(test == ["CMD", "rabbitmq-diagnostics", "-q", "ping"])
    }

    @Test func simulatorAndBridgeAreBuiltFromTheDockerfile() throws {
        var images: Set<String> = []
        for name in ["blitline-simulator", "blitline-bridge"] {
            let service = try service(name)
            let context = try #require(service[path: "build", "context"]?.string)
            let dockerfile = try #require(service[path: "build", "dockerfile"]?.string)
            // Paths in a compose file are relative to its folder; the Dockerfile to the context.
            let contextURL = DeployFolder.url("deploy").appendingPathComponent(context).standardizedFileURL
            #expect(contextURL.path == DeployFolder.repositoryRoot.standardizedFileURL.path,
                "\(name): the build context must be the repository root")
            #expect(FileManager.default.fileExists(atPath: contextURL.appendingPathComponent(dockerfile).path))
            images.insert(try #require(service["image"]?.string))
        }
        #expect(images.count == 1, "both services run the one image")
        let entrypoint = try service("blitline-simulator")["entrypoint"]?.array().compactMap(\.string) ?? []
        #expect(entrypoint.first == "blitline-simulator")
        #expect(entrypoint.contains("--host") && entrypoint[entrypoint.firstIndex(of: "--host")! + 1] == "0.0.0.0",
            "the simulator must listen beyond its container's loopback")
        #expect(try service("blitline-bridge")["entrypoint"] == nil, "the bridge runs the image's entry point")
    }

    @Test func bridgeStartsOnceTheBrokerAndSimulatorAreHealthy() throws {
        let dependencies = try #require(try service("blitline-bridge")["depends_on"])
        for name in ["rabbitmq", "blitline-simulator"] {
            #expect(dependencies[path: name, "condition"]?.string == "service_healthy", "\(name)")
            #expect(try service(name)["healthcheck"] != nil, "\(name) has no health check to wait for")
        }
    }

    @Test func bridgeEnvironmentIsAValidPostbackConfiguration() throws {
        let environment = try bridgeEnvironment()
        for name in environment.keys {
            #expect(BridgeSettings.names.contains(name), "\(name) is no setting of the bridge")
        }
        let configuration = try BridgeSettings.configuration(environment)
        #expect(configuration.usesPostbacks)
        #expect(configuration.postbackSecrets.count == 1)

        let broker = try #require(URLComponents(string: configuration.amqpURL))
        #expect(broker.host == "rabbitmq")
        #expect(containerPorts(try service("rabbitmq")).contains(broker.port ?? 5672))

        let simulatorEntrypoint = try service("blitline-simulator")["entrypoint"]?.array().compactMap(\.string) ?? []
        let simulatorPort = try #require(simulatorEntrypoint.firstIndex(of: "--port").map { Int(simulatorEntrypoint[$0 + 1]) } ?? nil)
        for url in [configuration.blitlineAPIURL, configuration.blitlinePollURL] {
            let components = try #require(URLComponents(string: url))
            #expect(components.host == "blitline-simulator" && components.port == simulatorPort, "\(url)")
        }

        // The simulator posts results back to the bridge's service name on the compose network.
        let postbackBaseURL = try #require(configuration.postbackBaseURL)
        let postback = try #require(URLComponents(string: postbackBaseURL))
        #expect(postback.host == "blitline-bridge")
        #expect(postback.port == configuration.listenPort)
    }

    @Test func healthChecksAndPortsMatchTheListeners() throws {
        let bridge = try service("blitline-bridge")
        let listenPort = try BridgeSettings.configuration(bridgeEnvironment()).listenPort
        #expect(listenPort == defaults.listenPort)
        #expect(containerPorts(bridge).contains(listenPort))
        let bridgeCheck = try healthCheckURL(bridge)
        #expect(bridgeCheck.path == "/healthz" && bridgeCheck.port == listenPort)

        let simulator = try service("blitline-simulator")
        let simulatorCheck = try healthCheckURL(simulator)
        #expect(simulatorCheck.path == "/_control/stats")
        #expect(simulatorCheck.port.map { containerPorts(simulator).contains($0) } == true)
    }

    @Test func bridgeHasTimeToDrainBeforeItIsKilled() throws {
        let grace = try #require(try service("blitline-bridge")["stop_grace_period"]?.string.flatMap(durationSeconds))
        let shutdown = try BridgeSettings.configuration(bridgeEnvironment()).shutdownTimeout
        #expect(grace > seconds(shutdown))
        #expect(grace > seconds(defaults.shutdownTimeout))
    }

    @Test func interpolationTakesTheDefaults() {
        #expect(Self.interpolated("amqp://u:${P:-secret}@h/%2F") == "amqp://u:secret@h/%2F")
        #expect(Self.interpolated("${A-x}${B}$$") == "x$")
    }
}
