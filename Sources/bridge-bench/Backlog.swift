import AMQP
import Foundation

/// `--backlog N`: a bridge starting while the outcomes stream holds N outcomes in its window, with
/// deadlines already due: 500 jobs among those outcomes (which must not time out) and 500 with no
/// outcome (which must). Reported: the time to `/readyz` 200, to the last right timeout, wrong
/// timeouts, broker sessions begun (a torn-down session begins another), and peak RSS.
func runBacklog(_ options: Options, outcomes count: Int) async throws {
    let run = "backlog\(ProcessInfo.processInfo.processIdentifier)"
    let jobsQueue = "\(run).jobs", exchange = "\(run).events", failures = "\(run).failures"
    let connection = try await AMQPConnection.connect(try AMQPEndpoints(urls: options.url).configurations[0])
    let channel = try await connection.openChannel()
    try await channel.enableConfirms()
    print("bridge-bench --backlog: \(count) outcomes in the stream, 1000 deadlines due; " + machine)

    let logs = try logFolder(run)
    let bridgePort = freePort()
    // No Blitline is needed: the bridge only decides deadlines here.
    var environment = environmentForBridge(
        options, jobsQueue: jobsQueue, exchange: exchange, simulatorPort: freePort(), bridgePort: bridgePort)
    environment["LOG_LEVEL"] = "info"
    let declaring = try await startBridge(options, environment: environment, port: bridgePort, log: logs + "/declare.log")
    declaring.terminate()
    declaring.waitUntilExit()
    try await channel.declareQueue(failures, durable: true, arguments: ["x-queue-type": .string("quorum")])
    try await channel.bindQueue(failures, exchange: exchange, routingKey: "job.failed")

    // The outcomes as the bridge records them: a record per 64 events (a busy bridge's batch at
    // PREFETCH 64), with its header and a timestamp.
    var started = ContinuousClock.now
    let now = UInt64(Date().timeIntervalSince1970)
    let perRecord = 64
    try await publishWindowed(count: (count + perRecord - 1) / perRecord) { record in
        let ids = (record * perRecord..<min((record + 1) * perRecord, count)).map { "backlog-\($0)" }
        let message = outcomeRecord(ids, timestamp: now)
        try await channel.publish(message.body, routingKey: jobsQueue + ".outcomes", properties: message.properties)
    }
    print(String(format: "published %d outcomes into the stream in %.1f s", count, seconds(ContinuousClock.now - started)))

    // Deadlines due at once, ten messages of 100 jobs, straight into the timeouts queue.
    let milliseconds = Int64(Date().timeIntervalSince1970 * 1000)
    for message in 0..<10 {
        let jobs = (0..<100).map { slot -> String in
            let index = message * 100 + slot
            let id = index % 2 == 0 ? "backlog-\(index * 997 % count)" : "missing-\(index)"
            return #"{"request_id":"\#(id)","job_id":"job-\#(index)","submitted_at":\#(milliseconds - 60_000),"deadline":\#(milliseconds - 1000),"application_key":"k"}"#
        }
        try await channel.publish(
            Array("[\(jobs.joined(separator: ","))]".utf8), routingKey: jobsQueue + ".timeouts",
            properties: AMQPProperties(contentType: "application/json", deliveryMode: 2))
    }

    started = ContinuousClock.now
    let bridge = try await startBridge(options, environment: environment, port: bridgePort, log: logs + "/bridge.log")
    defer { bridge.terminate() }
    let ready = ContinuousClock.now - started
    var missing = 0
    var wrong = 0
    let reader = try await connection.openChannel()
    let deadline = ContinuousClock.now + .seconds(300)
    let watchdog = Task {
        try await Task.sleep(until: deadline)
        try? await reader.close()
    }
    do {
        for try await delivery in try await reader.consume(queue: failures, prefetch: 1000) {
            delivery.ack()
            let id = delivery.properties.messageID ?? ""
            if id.hasPrefix("missing-") { missing += 1 } else { wrong += 1 }
            if missing == 500 { break }
        }
    } catch {
        print("the timeouts did not all come within 300 s: \(error)")
    }
    watchdog.cancel()
    let timedOut = ContinuousClock.now - started
    try await Task.sleep(for: .seconds(3))
    let log = (try? String(contentsOfFile: logs + "/bridge.log", encoding: .utf8)) ?? ""
    let sessions = log.split(separator: "\n").filter { $0.contains("connected to the broker") }.count
    let rss = peakRSS(bridge.processIdentifier)
    bridge.terminate()
    bridge.waitUntilExit()

    print(String(format: "ready after %.2f s; %d of 500 right timeouts after %.2f s; %d wrong timeouts", seconds(ready), missing,
        seconds(timedOut), wrong))
    print("broker sessions begun: \(sessions) (1 means none was torn down)")
    print(String(format: "bridge peak RSS: %.1f MiB", Double(rss) / 1024))
    print("logs: \(logs)")
    _ = try? await channel.deleteQueue(failures)
    await deleteTopology(channel, jobsQueue: jobsQueue, exchange: exchange, deadlines: ".deadlines.1810s")
    await connection.close()
}
