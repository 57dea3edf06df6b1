import AMQP
import Foundation
import Synchronization

/// `--soak SECONDS [--rate R]`: the bridge under a steady R requests per second for SECONDS, one
/// postback in a hundred never coming (so timeouts are decided all along), with `JOB_TIMEOUT`
/// 60 s so that the outcome ledger's window (2 min 10 s) is full well within the run. Prints the
/// bridge's resident memory every 30 s (flat once the window is full, whatever the run's length)
/// and, at the end, its postback-to-event latency at that rate.
func runSoak(_ options: Options, seconds duration: Int) async throws {
    let rate = options.rate ?? 200
    let run = "soak\(ProcessInfo.processInfo.processIdentifier)"
    let jobsQueue = "\(run).jobs", exchange = "\(run).events", eventsQueue = "\(run).collected"
    let connection = try await AMQPConnection.connect(try AMQPEndpoints(urls: options.url).configurations[0])
    let channel = try await connection.openChannel()
    try await channel.enableConfirms()
    try await channel.declareExchange(exchange, type: "topic", durable: true)
    try await channel.declareQueue(eventsQueue, durable: true, arguments: ["x-queue-type": .string("quorum")])
    try await channel.bindQueue(eventsQueue, exchange: exchange, routingKey: "job.#")
    print("bridge-bench --soak: \(rate) requests/s for \(duration) s, JOB_TIMEOUT 60s, 1% of postbacks dropped; "
        + machine)

    let logs = try logFolder(run)
    let simulatorPort = freePort(), bridgePort = freePort()
    let simulator = try start(
        options.bin + "/blitline-simulator",
        ["--port", "\(simulatorPort)", "--processing-delay", "1ms", "--log-level", "warning"], log: logs + "/simulator.log")
    defer { simulator.terminate() }
    var environment = environmentForBridge(
        options, jobsQueue: jobsQueue, exchange: exchange, simulatorPort: simulatorPort, bridgePort: bridgePort)
    environment["JOB_TIMEOUT"] = "60s"
    let bridge = try await startBridge(options, environment: environment, port: bridgePort, log: logs + "/bridge.log")
    defer { bridge.terminate() }
    _ = httpPost("http://127.0.0.1:\(simulatorPort)/_control", #"{"drop_postback_fraction":0.01}"#)

    let events = Counter()
    let reader = try await connection.openChannel()
    let collecting = Task {
        for try await delivery in try await reader.consume(queue: eventsQueue, prefetch: 1000) {
            delivery.ack()
            events.add(1)
        }
    }
    let publisher = try await connection.openChannel()
    try await publisher.enableConfirms()
    let started = ContinuousClock.now
    let end = started + .seconds(duration)
    var published = 0
    var nextReport = started + .seconds(30)
    print("     s  requests    events  RSS MiB")
    while ContinuousClock.now < end {
        let tick = ContinuousClock.now
        let due = Int(Double(rate) * seconds(tick - started)) - published
        if due > 0 {
            let first = published
            try await publishWindowed(count: due) { offset in
                try await publisher.publish(
                    job(first + offset), routingKey: jobsQueue,
                    properties: AMQPProperties(contentType: "application/json", deliveryMode: 2, messageID: "\(run)-\(first + offset)"))
            }
            published += due
        }
        if tick >= nextReport {
            print(String(format: "%6.0f %9d %9d %8.1f", seconds(tick - started), published, events.value,
                Double(residentKiB(bridge.processIdentifier)) / 1024))
            nextReport += .seconds(30)
        }
        try await Task.sleep(until: tick + .milliseconds(100))
    }
    // Latency at this steady rate, below saturation: what a user sees, unlike the queueing of a
    // saturated run.
    printLatency(histogram(httpGet("http://127.0.0.1:\(bridgePort)/metrics") ?? "", "blitline_bridge_postback_to_event_seconds"))
    // The last jobs' timeouts come 70 s after them.
    try await Task.sleep(for: .seconds(75))
    print(String(format: "end: %d requests, %d events; bridge RSS %.1f MiB, peak %.1f MiB", published, events.value,
        Double(residentKiB(bridge.processIdentifier)) / 1024, Double(peakRSS(bridge.processIdentifier)) / 1024))
    print("logs: \(logs)")
    collecting.cancel()
    bridge.terminate()
    bridge.waitUntilExit()
    _ = try? await channel.deleteQueue(eventsQueue)
    await deleteTopology(channel, jobsQueue: jobsQueue, exchange: exchange, deadlines: ".deadlines.70s")
    await connection.close()
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func add(_ amount: Int) { count.withLock { $0 += amount } }
    var value: Int { count.withLock { $0 } }
}
