import AMQP
import Foundation
import Logging
import Synchronization
import Testing
import TestSupport

@testable import BlitlineBridge

#if canImport(Glibc)
    import Glibc
#endif

/// What deploy/test.sh hands the tests: the throwaway broker and the built bridge executable.
enum TestEnvironment {
    /// `AMQP_TEST_URL`: the broker's URL; within `$brokerOverride.withValue`, that one instead
    /// (the cluster's comma-separated URLs).
    static var brokerURL: String {
        get throws {
            if let brokerOverride { return brokerOverride }
            return try #require(
                ProcessInfo.processInfo.environment["AMQP_TEST_URL"],
                "AMQP_TEST_URL is not set: run the tests with deploy/test.sh, which starts a broker")
        }
    }

    /// `AMQP_TEST_TLS_URL` and `AMQP_TEST_TLS_CA`: the broker's TLS listener (`amqps://localhost:…`)
    /// and the CA that signed its certificate.
    static var brokerTLS: (url: String, ca: String) {
        get throws {
            let environment = ProcessInfo.processInfo.environment
            let url = try #require(
                environment["AMQP_TEST_TLS_URL"].flatMap { $0.isEmpty ? nil : $0 },
                "AMQP_TEST_TLS_URL is not set: run the tests with deploy/test.sh, whose broker listens for TLS too")
            return (url, try #require(environment["AMQP_TEST_TLS_CA"]))
        }
    }

    /// The broker URL(s) that the tests in scope use instead of `AMQP_TEST_URL`.
    @TaskLocal static var brokerOverride: String?

    /// `AMQP_TEST_CLUSTER_URLS`: the three-node cluster's URLs, comma-separated, when
    /// deploy/test.sh started one.
    static var clusterURLs: String? { ProcessInfo.processInfo.environment["AMQP_TEST_CLUSTER_URLS"] }

    /// The AMQP ports of the cluster's nodes 1, 2 and 3.
    static func clusterPorts() throws -> [Int] {
        try AMQPEndpoints(urls: try #require(clusterURLs)).configurations.map(\.port)
    }

    /// Runs rabbitmqctl with `arguments` against the broker the tests in scope use: within
    /// `$brokerOverride` (the cluster) through a node of the cluster that answers, else against
    /// the test node.
    static func brokerCtl(_ arguments: String...) async throws -> String {
        try await run(brokerOverride == nil ? "AMQP_TEST_BROKER" : "AMQP_TEST_CLUSTER", ["ctl"] + arguments)
    }

    /// Runs deploy/rabbitmq-cluster.sh (`AMQP_TEST_CLUSTER`) with `arguments`, e.g. `stop-node 2`.
    @discardableResult
    static func controlCluster(_ arguments: String...) async throws -> String {
        try await run("AMQP_TEST_CLUSTER", arguments)
    }

    /// `BLITLINE_BRIDGE_BIN`: the `blitline-bridge` executable under test.
    static var bridgeExecutable: String {
        get throws {
            let path = try #require(
                ProcessInfo.processInfo.environment["BLITLINE_BRIDGE_BIN"],
                "BLITLINE_BRIDGE_BIN is not set: run the tests with deploy/test.sh, which builds the bridge")
            try #require(FileManager.default.isExecutableFile(atPath: path), "\(path) is not an executable")
            return path
        }
    }

    /// `AMQP_TEST_QUEUE_TYPE`: the `QUEUE_TYPE` the bridges under test run with (default quorum).
    static var queueType: Topology.QueueType {
        ProcessInfo.processInfo.environment["AMQP_TEST_QUEUE_TYPE"].flatMap(Topology.QueueType.init(rawValue:)) ?? .quorum
    }

    /// Connects to the broker, or to the first cluster node that answers.
    static func connect() async throws -> AMQPConnection {
        var endpoints = try AMQPEndpoints(urls: brokerURL)
        var failure: (any Error)?
        for _ in endpoints.configurations {
            do {
                return try await AMQPConnection.connect(
                    endpoints.next(), logger: Logger(label: "amqp") { _ in SwiftLogNoOpLogHandler() })
            } catch {
                failure = error
            }
        }
        throw failure!
    }

    /// Runs deploy/rabbitmq-node.sh (`AMQP_TEST_BROKER`) with `arguments`, e.g. `ctl stop_app`.
    @discardableResult
    static func controlBroker(_ arguments: String...) async throws -> String {
        try await run("AMQP_TEST_BROKER", arguments)
    }

    private static func run(_ variable: String, _ arguments: [String]) async throws -> String {
        let script = try #require(ProcessInfo.processInfo.environment[variable], "\(variable) is not set")
        return try await runControlScript(script, arguments)
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago, never the same twice in this process.
    static func freePort() throws -> Int { try Ports.free() }

    /// A name of lowercase letters and digits no other test uses.
    static func uniqueSuffix() -> String { TestSupport.uniqueSuffix() }
}
