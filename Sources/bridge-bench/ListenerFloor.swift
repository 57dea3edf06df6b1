import Foundation
import Synchronization

/// `--listener-floor SECONDS [--rate R] [--postback-connections N]`: what the bridge's HTTP
/// listener alone costs it per request at a given pace. N keep-alive connections post a body of
/// a postback's size (1.2 KB) to `/healthz` at R requests a second in all, for SECONDS, and the
/// bridge answers each 405 without handling it: the same SwiftNIO pipeline, socket reads and
/// writes and event-loop wake-ups as a postback, none of the bridge's own work. Prints the
/// bridge's CPU per request, the least any postback can cost it at that pace.
func runListenerFloor(_ options: Options, seconds duration: Int) async throws {
    let run = "floor\(ProcessInfo.processInfo.processIdentifier)"
    let connections = options.postbackConnections, rate = options.rate ?? 2000
    print("bridge-bench --listener-floor: \(rate) requests/s over \(connections) keep-alive connections for \(duration) s; "
        + machine)
    let logs = try logFolder(run)
    let bridgePort = freePort()
    // No Blitline: no request is published, so the bridge never calls it.
    let environment = environmentForBridge(
        options, jobsQueue: "\(run).jobs", exchange: "\(run).events", simulatorPort: freePort(), bridgePort: bridgePort)
    let bridge = try await startBridge(options, environment: environment, port: bridgePort, log: logs + "/bridge.log")
    defer { bridge.terminate() }

    let answered = Counter(), unexpected = Counter()
    let started = ContinuousClock.now
    let cpuBefore = cpuSeconds(bridge.processIdentifier)
    // One thread per connection, each sending at its turn: a blocking client costs the bench next
    // to nothing between requests, and its pace does not depend on an event loop of its own.
    let interval = Duration.seconds(Double(connections) / Double(rate))
    let threads = (0..<connections).map { index in
        Thread {
            let offset = interval * (Double(index) / Double(connections))
            postPaced(port: bridgePort, from: started + offset, every: interval, until: started + .seconds(duration)) {
                if $0 { answered.add(1) } else { unexpected.add(1) }
            }
        }
    }
    for thread in threads { thread.stackSize = 256 << 10; thread.start() }
    while answered.value + unexpected.value < Int(Double(rate * duration) * 0.99), ContinuousClock.now < started + .seconds(duration + 5) {
        try await Task.sleep(for: .milliseconds(200))
    }
    try await Task.sleep(for: .milliseconds(500))
    let cpu = cpuSeconds(bridge.processIdentifier) - cpuBefore
    let elapsed = seconds(ContinuousClock.now - started)
    print(String(format: "listener floor: %d requests answered 405 in %.1f s (%.0f/s), %d failed", answered.value, elapsed,
        Double(answered.value) / elapsed, unexpected.value))
    print(String(format: "bridge CPU per request: %.0f µs (%.2f CPU seconds)", cpu * 1e6 / Double(max(1, answered.value)), cpu))
    print("logs: \(logs)")
}

/// Posts on one keep-alive connection at `first`, then every `interval` until `end`, reporting
/// whether each answer was the expected 405; a connection that fails is opened again.
private func postPaced(
    port: Int, from first: ContinuousClock.Instant, every interval: Duration, until end: ContinuousClock.Instant,
    report: (Bool) -> Void
) {
    let body = String(repeating: "x", count: 1200)
    let request = Array("POST /healthz HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    var descriptor: Int32 = -1
    var due = first
    var buffer = [UInt8](repeating: 0, count: 4096)
    while due < end {
        let wait = due - ContinuousClock.now
        if wait > .zero { Thread.sleep(forTimeInterval: seconds(wait)) }
        due += interval
        if descriptor < 0 { descriptor = connectedSocket(port) }
        guard descriptor >= 0, write(descriptor, request, request.count) == request.count,
            let status = readAnswer(descriptor, &buffer)
        else {
            report(false)
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
            continue
        }
        report(status == 405)
    }
    if descriptor >= 0 { close(descriptor) }
}

/// Reads one answer with a `Content-Length` body; its status, or `nil` when the connection failed.
private func readAnswer(_ descriptor: Int32, _ buffer: inout [UInt8]) -> Int? {
    var received: [UInt8] = []
    while true {
        if let headEnd = received.firstRange(of: Array("\r\n\r\n".utf8)) {
            let head = String(decoding: received[..<headEnd.lowerBound], as: UTF8.self).lowercased()
            let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            if received.count - headEnd.upperBound >= length {
                return Int(head.dropFirst("http/1.1 ".count).prefix(3))
            }
        }
        let count = read(descriptor, &buffer, buffer.count)
        guard count > 0 else { return nil }
        received += buffer[..<count]
    }
}

private func connectedSocket(_ port: Int) -> Int32 {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = loopback(port: port)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(descriptor)
        return -1
    }
    return descriptor
}
