import AMQP
import Foundation
import Logging
import Synchronization
import Testing

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

    /// The broker URL(s) that the tests in scope use instead of `AMQP_TEST_URL`.
    @TaskLocal static var brokerOverride: String?

    /// `AMQP_TEST_CLUSTER_URLS`: the three-node cluster's URLs, comma-separated, when
    /// deploy/test.sh started one.
    static var clusterURLs: String? { ProcessInfo.processInfo.environment["AMQP_TEST_CLUSTER_URLS"] }

    /// The AMQP ports of the cluster's nodes 1, 2 and 3.
    static func clusterPorts() throws -> [Int] {
        try AMQPEndpoints(urls: try #require(clusterURLs)).configurations.map(\.port)
    }

    /// Runs deploy/rabbitmq-cluster.sh (`AMQP_TEST_CLUSTER`) with `arguments`, e.g. `stop-node 2`.
    @discardableResult
    static func controlCluster(_ arguments: String...) throws -> String {
        try run("AMQP_TEST_CLUSTER", arguments)
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
    static func controlBroker(_ arguments: String...) throws -> String {
        try run("AMQP_TEST_BROKER", arguments)
    }

    /// Runs a control script and returns what it printed. Spawned and reaped here rather than
    /// with Foundation's `Process`, whose `waitUntilExit` was seen to miss the exit of a script
    /// that leaves a broker running in the background.
    private static func run(_ variable: String, _ arguments: [String]) throws -> String {
        let script = try #require(ProcessInfo.processInfo.environment[variable], "\(variable) is not set")
        var pipeFDs: [Int32] = [-1, -1]
        try #require(pipe(&pipeFDs) == 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        let argv = ([script] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, script, &actions, nil, argv, environ)
        close(pipeFDs[1])
        defer { close(pipeFDs[0]) }
        try #require(spawned == 0, "cannot run \(script): error \(spawned)")
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(pipeFDs[0], &buffer, buffer.count)
            if count > 0 { output += buffer[..<count] } else if count == 0 || errno != EINTR { break }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
        let text = String(decoding: output, as: UTF8.self)
        let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
        try #require(exitCode == 0, "\(script) \(arguments) failed (\(exitCode)): \(text)")
        return text
    }

    /// Ports handed out already: the system may offer a closed port again at once.
    private static let handedOut = Mutex<Set<Int>>([])

    /// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed), never
    /// the same twice in this process.
    static func freePort() throws -> Int {
        for _ in 0..<20 {
            let port = try unusedPort()
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw PortsExhausted()
    }

    struct PortsExhausted: Error {}

    private static func unusedPort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(socket >= 0, "socket() failed")
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0, "bind() failed")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A name of lowercase letters and digits no other test uses.
    static func uniqueSuffix() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }
}

/// Waits for `condition` up to `timeout`, checking every 50 ms; returns whether it held.
func eventually(timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}
