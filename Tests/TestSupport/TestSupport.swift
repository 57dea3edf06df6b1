// What the test targets share: waiting on a condition, free ports, unique names, the broker's
// control scripts, and serving a router for the length of a test. No Testing here (a plain
// library): failures are thrown errors.
#if canImport(Glibc)
import Glibc
#endif
import AsyncSupport
import Foundation
import Hummingbird
import Logging
import Synchronization

/// Waits for `condition` up to `timeout`, checking every 50 ms; returns whether it held. A
/// condition that needs longer than that is a failure the caller reports.
public func eventually(
    timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// A name of lowercase letters and digits no other test uses.
public func uniqueSuffix() -> String {
    String(UInt64.random(in: 0...UInt64.max), radix: 36)
}

/// What a test-support call could not do.
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// TCP ports on 127.0.0.1 for the tests' listeners.
public enum Ports {
    /// Ports handed out already: the system may offer a closed port again at once.
    private static let handedOut = Mutex<Set<Int>>([])

    /// A port that was free a moment ago (bound to port 0, then closed), never the same twice in
    /// this process.
    public static func free() throws -> Int {
        for _ in 0..<20 {
            let port = try unused()
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw TestSupportError("no free port in 20 tries")
    }

    /// A socket connected to 127.0.0.1:`port`, or nil if the connection was refused; the caller
    /// closes it.
    public static func connectedSocket(_ port: Int) -> Int32? {
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    /// 127.0.0.1:`port` as a socket address.
    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    /// A socket listening on 127.0.0.1 that never accepts: the system completes each connection
    /// and nothing ever answers on it, as a server that hangs. The caller closes it.
    public static func silentListener() throws -> (socket: Int32, port: Int) {
        let (socket, port) = try boundSocket()
        guard listen(socket, 64) == 0 else {
            close(socket)
            throw TestSupportError("listen() failed")
        }
        return (socket, port)
    }

    /// A server on 127.0.0.1 that reads each request, answers with `head` (a status line, headers
    /// and the start of a body) and then sends nothing more, holding the connection open as a
    /// server that stalls mid-answer. `shutdown` and `close` on the returned socket stop it and
    /// close its connections (`close` alone does not wake a thread waiting in `accept`).
    public static func stallingServer(answering head: String) throws -> (socket: Int32, port: Int) {
        let (socket, port) = try silentListener()
        let answer = Array(head.utf8)
        Thread {
            var connections: [Int32] = []
            defer { connections.forEach { _ = close($0) } }
            while true {
                let connection = accept(socket, nil, nil)
                guard connection >= 0 else { return }
                connections.append(connection)
                var request = [UInt8](repeating: 0, count: 65536)
                _ = recv(connection, &request, request.count, 0)
                _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }.start()
        return (socket, port)
    }

    private static func unused() throws -> Int {
        let (socket, port) = try boundSocket()
        close(socket)
        return port
    }

    /// A socket bound to 127.0.0.1 on a port the system chose, and that port.
    private static func boundSocket() throws -> (Int32, Int) {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw TestSupportError("socket() failed") }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            close(socket)
            throw TestSupportError("bind() failed")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        return (socket, Int(UInt16(bigEndian: address.sin_port)))
    }
}

/// Runs a control script (deploy/rabbitmq-node.sh, deploy/rabbitmq-cluster.sh) and returns what it
/// printed, throwing when it fails. Spawned and reaped here rather than with Foundation's
/// `Process`, whose `waitUntilExit` was seen to miss the exit of a script that leaves a broker
/// running in the background.
///
/// The script runs from a thread of its own: rabbitmqctl starts an Erlang VM for a second or more,
/// and the tests call it in loops (`messagesHeld`); waiting for it on the cooperative pool starved
/// the servers and timers of every test beside it (CI saw a 5 s deadline pass before work that
/// returns at once had run).
public func runControlScript(_ script: String, _ arguments: [String]) async throws -> String {
    try await onOwnThread { try spawnAndWait(script, arguments) }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module does not
/// declare (it is a GNU extension).
private let addCloseFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
    unsafeBitCast($0, to: AddCloseFrom.self)
}

private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

private func spawnAndWait(_ script: String, _ arguments: [String]) throws -> String {
    guard let closeFrom = addCloseFrom else {
        throw TestSupportError("posix_spawn_file_actions_addclosefrom_np is missing (glibc 2.34 or later needed)")
    }
    var pipeFDs: [Int32] = [-1, -1]
    guard pipe(&pipeFDs) == 0 else { throw TestSupportError("pipe() failed") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
    // Nothing else of this process: the script (and a broker it starts) would otherwise hold
    // every socket the tests have open, so that a connection a server or a test closes stays
    // open, and a listener that stopped still accepts, for as long as the script runs.
    _ = closeFrom(&actions, 3)
    let argv = ([script] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, script, &actions, nil, argv, environ)
    close(pipeFDs[1])
    defer { close(pipeFDs[0]) }
    guard spawned == 0 else { throw TestSupportError("cannot run \(script): error \(spawned)") }
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
    guard exitCode == 0 else { throw TestSupportError("\(script) \(arguments) failed (\(exitCode)): \(text)") }
    return text
}

/// Runs `body`, then `undo` whether `body` returned or threw: a `defer` that can await.
public func withUndo<T>(
    _ undo: () async -> Void, _ body: () async throws -> T, isolation: isolated (any Actor)? = #isolation
) async rethrows -> T {
    do {
        let value = try await body()
        await undo()
        return value
    } catch {
        await undo()
        throw error
    }
}

/// Runs blocking work (socket reads, a control script, which starts an Erlang VM for a second or
/// more) on a thread of its own: on the cooperative pool (two threads on a 2-core machine) it would
/// starve the servers under test and every other test running beside it.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Serves `router` on 127.0.0.1, at a port the system picks, while `body` runs with that port;
/// then stops the server, whatever `body` did.
public func serving<T: Sendable>(
    _ router: Router<BasicRequestContext>, _ body: (Int) async throws -> T
) async throws -> T {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let listening = ListeningChannel()
    let application = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: {
            listening.set($0)
            continuation.yield($0.localAddress?.port ?? 0)
        },
        logger: Logger(label: "test-server", factory: { _ in SwiftLogNoOpLogHandler() })
    )
    let server = Task { try await application.runTakingCancellationAsGracefulShutdown(listening: listening, logger: application.logger) }
    var iterator = ports.makeAsyncIterator()
    let port = await iterator.next() ?? 0
    let result: Result<T, any Error>
    do {
        result = .success(try await body(port))
    } catch {
        result = .failure(error)
    }
    server.cancel()
    _ = await server.result
    return try result.get()
}
