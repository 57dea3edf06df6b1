import AsyncHTTPClient
import Foundation
import TestSupport
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A plain TCP connection to 127.0.0.1 for clients that HTTP libraries will not play: ones that
/// stall after their head, trickle bytes, or must not reuse a pooled connection.
final class RawConnection: Sendable {
    let descriptor: Int32

    /// Connects, or `nil` when the connection is refused.
    init?(port: Int) {
        guard let descriptor = Ports.connectedSocket(port) else { return nil }
        self.descriptor = descriptor
    }

    /// Sends `text`; false once the server has closed the connection.
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return Glibc.send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count
    }

    /// Whether the server has closed the connection (or reset it), without waiting.
    var isClosedByServer: Bool {
        var byte: UInt8 = 0
        let count = recv(descriptor, &byte, 1, Int32(MSG_DONTWAIT) | Int32(MSG_PEEK))
        return count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Reads until the server closes the connection or `timeout` passes.
    func readUntilClosed(timeout: Duration) -> (text: String, closed: Bool) {
        let deadline = ContinuousClock.now + timeout
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            var pollDescriptor = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let left = deadline - ContinuousClock.now
            let milliseconds = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&pollDescriptor, 1, milliseconds) > 0 else { continue }
            let count = read(descriptor, &buffer, buffer.count)
            if count > 0 {
                received += buffer[..<count]
            } else {
                return (String(decoding: received, as: UTF8.self), true)
            }
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    /// Reads until what was read contains `marker`, the server closes the connection or
    /// `timeout` passes.
    func receive(until marker: String, timeout: Duration) -> String {
        let deadline = ContinuousClock.now + timeout
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline, !String(decoding: received, as: UTF8.self).contains(marker) {
            var pollDescriptor = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&pollDescriptor, 1, 50) > 0 else { continue }
            let count = Glibc.read(descriptor, &buffer, buffer.count)
            guard count > 0 else { break }
            received += buffer[..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Sends `chunk` up to `times` times and reads nothing, each send waiting at most `timeout`
    /// for room; returns the bytes sent before the server stopped taking them (or all).
    func sendWithoutReading(_ chunk: [UInt8], times: Int, timeout: Duration) -> Int {
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        for _ in 0..<times {
            let count = chunk.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { break }
            sent += count
            guard count == chunk.count else { break }
        }
        return sent
    }

    func close() { Glibc.close(descriptor) }
}

/// Many connections that send a request head one byte every `interval`, from a thread of their
/// own (blocking calls stay off the tests' cooperative pool), noting when the server cuts each.
final class SlowClients: Sendable {
    let connected: Int
    private let connections: [RawConnection]
    /// When each connection was made: the server's head deadline runs from then.
    private let connectedAt: [ContinuousClock.Instant]
    private let interval: Duration
    /// Time from each connection's making to its cut, by index.
    private let cuts = Mutex<[Int: Duration]>([:])
    private let stopped = Mutex(false)

    init(port: Int, count: Int, interval: Duration) {
        let made = (0..<count).compactMap { _ in RawConnection(port: port).map { ($0, ContinuousClock.now) } }
        connections = made.map(\.0)
        connectedAt = made.map(\.1)
        connected = connections.count
        self.interval = interval
    }

    deinit {
        stopped.withLock { $0 = true }
        connections.forEach { $0.close() }
    }

    /// Starts trickling `POST /blitline/postback/…` heads that never end.
    func start() {
        let head = Array("POST /blitline/postback/slow HTTP/1.1\r\nHost: bridge\r\nX-Slow: " + String(repeating: "s", count: 10_000))
        let started = ContinuousClock.now
        let thread = Thread { [self] in
            var sent = 0
            var nextSend = started
            while !stopped.withLock({ $0 }) {
                let now = ContinuousClock.now
                let open = cuts.withLock { cuts in connections.indices.filter { cuts[$0] == nil } }
                if open.isEmpty { return }
                let sendNow = now >= nextSend
                for index in open {
                    let connection = connections[index]
                    let alive = sendNow ? connection.send(String(head[sent % head.count])) : true
                    if !alive || connection.isClosedByServer {
                        cuts.withLock { $0[index] = now - connectedAt[index] }
                    }
                }
                if sendNow {
                    sent += 1
                    nextSend = nextSend + interval
                }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        thread.start()
    }

    /// Waits until every connection was cut or `timeout` passed; returns the cut times.
    func waitUntilAllCut(timeout: Duration) async -> [Duration] {
        _ = await eventually(timeout: timeout) { cuts.withLock { $0.count } == connected }
        stopped.withLock { $0 = true }
        return cuts.withLock { Array($0.values) }
    }
}

extension HTTPClient {
    /// The tests' client for the bridge's listener. It lets a pooled connection go after 500 ms
    /// idle, before any `LISTEN_HEADER_TIMEOUT` the tests use (1 s and up) closes it: a request
    /// sent on a keep-alive connection just as the server closes it for idleness is lost in
    /// flight (`HTTPClient.shared` keeps idle connections 60 s, and a `/readyz` sample once got
    /// no answer that way).
    static let toListener = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: Configuration(connectionPool: .init(idleTimeout: .milliseconds(500))))
}
