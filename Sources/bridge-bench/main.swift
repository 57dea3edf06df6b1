// bridge-bench: the bridge under end-to-end load on this machine (deploy/bench.sh runs it).
//
// N job requests are published beforehand; then blitline-simulator (postbacks at once) and
// blitline-bridge (both release builds, as processes) are started and every event is collected.
// Reported: jobs per second from the first request consumed to the last event published, the
// bridge's postback-to-event latency p50 and p99 (from its own histogram), its peak RSS; then the
// same message pattern driven by the AMQP module alone (the broker's ceiling for it).
//
// usage: bridge-bench --url AMQP_URL[,AMQP_URL...] --bin DIR [--count 20000] [--prefetch 1024]
//                     [--queue-type quorum|classic]
//                     [--postback-connections 32] [--fresh-postback-connections]
//        bridge-bench ... --backlog N                    (Backlog.swift)
//        bridge-bench ... --soak SECONDS [--rate 200]    (Soak.swift)
// Several URLs are the nodes of one cluster (the bridge is given them all). The broker's CPU is read
// from the throwaway nodes' pid files: BROKER_DIR (deploy/rabbitmq-node.sh) or CLUSTER_DIR
// (deploy/rabbitmq-cluster.sh).
import AMQP
import Blitline
import Foundation

let options = Options()
if let backlog = options.backlog {
    try await runBacklog(options, outcomes: backlog)
    exit(0)
}
if let soakSeconds = options.soakSeconds {
    try await runSoak(options, seconds: soakSeconds)
    exit(0)
}
let run = "bench\(ProcessInfo.processInfo.processIdentifier)"
let jobsQueue = "\(run).jobs", exchange = "\(run).events", eventsQueue = "\(run).collected"
let nodes = try AMQPEndpoints(urls: options.url)
let connection = try await AMQPConnection.connect(nodes.configurations[0])
let channel = try await connection.openChannel()
try await channel.enableConfirms()
let queueKind: AMQPTable = options.queueType == "quorum" ? ["x-queue-type": .string("quorum")] : [:]
try await channel.declareExchange(exchange, type: "topic", durable: true)
try await channel.declareQueue(eventsQueue, durable: true, arguments: queueKind)
try await channel.bindQueue(eventsQueue, exchange: exchange, routingKey: "job.#")
print("bridge-bench: \(options.count) requests, prefetch \(options.prefetch), \(options.queueType) queues, \(nodes.configurations.count) broker node(s), postbacks over \(options.freshPostbackConnections ? "a fresh connection each" : "up to \(options.postbackConnections) keep-alive connections"); machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB")

let logs = NSTemporaryDirectory() + run
try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
let simulatorPort = freePort(), bridgePort = freePort()
let simulator = try start(
    options.bin + "/blitline-simulator",
    ["--port", "\(simulatorPort)", "--processing-delay", "1ms", "--log-level", "warning", "--poll-rate", "1000",
     "--postback-connections", "\(options.postbackConnections)"] + (options.freshPostbackConnections ? ["--fresh-postback-connections"] : []),
    log: logs + "/simulator.log")
let bridgeEnvironment = environmentForBridge(
    options, jobsQueue: jobsQueue, exchange: exchange, simulatorPort: simulatorPort, bridgePort: bridgePort)
// The bridge declares its topology (the jobs queue's arguments are its own), then stops; the
// requests are published while no one consumes them.
let declaring = try start(options.bin + "/blitline-bridge", [], environment: bridgeEnvironment, log: logs + "/declare.log")
try await waitUntilReady(bridgePort)
declaring.terminate()
declaring.waitUntilExit()

var started = ContinuousClock.now
try await publishRequests(channel, queue: jobsQueue, count: options.count)
print(String(format: "published %d requests beforehand in %.1f s", options.count, seconds(ContinuousClock.now - started)))

let bridge = try start(options.bin + "/blitline-bridge", [], environment: bridgeEnvironment, log: logs + "/bridge.log")
defer {
    bridge.terminate()
    simulator.terminate()
}

let reader = try await connection.openChannel()
let broker = brokerPIDs()
let brokerCPUBefore = brokerCPUSeconds(broker) ?? 0
let selfCPUBefore = cpuSeconds(getpid())
async let drained = firstConsumed(channel, queue: jobsQueue, count: options.count)
let (lastEvent, distinct, completed) = try await collectEvents(reader, queue: eventsQueue, count: options.count)
let firstRequest = try await drained
let bridgeSeconds = seconds(lastEvent - firstRequest)
let metrics = httpGet("http://127.0.0.1:\(bridgePort)/metrics") ?? ""
let latency = histogram(metrics, "blitline_bridge_postback_to_event_seconds")
let rss = peakRSS(bridge.processIdentifier)
// The bridge's deadline messages are still queued (JOB_TIMEOUT 30 minutes and TIMEOUT_GRACE 10 s,
// the defaults, name the queue): one per batch of jobs.
let deadlineMessages = (try? await channel.declareQueue(jobsQueue + ".deadlines.1810s", passive: true).messageCount).map(Int.init) ?? 0
let jobsPerDeadline = deadlineMessages > 0 ? max(1, Int((Double(options.count) / Double(deadlineMessages)).rounded())) : 1
let submitRequests = httpGet("http://127.0.0.1:\(simulatorPort)/_control/stats").flatMap { stats in
    (try? JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any])?["submit_requests"] as? Int
}
let cpu = (
    bridge: cpuSeconds(bridge.processIdentifier), simulator: cpuSeconds(simulator.processIdentifier),
    broker: brokerCPUSeconds(broker).map { $0 - brokerCPUBefore }, bench: cpuSeconds(getpid()) - selfCPUBefore)
bridge.terminate()
bridge.waitUntilExit()
simulator.terminate()

print(String(format: "bridge: %.0f jobs/s (%d events, %d completed, %d distinct ids, %.2f s from first request consumed to last event)",
    Double(options.count) / bridgeSeconds, options.count, completed, distinct, bridgeSeconds))
if let p50 = quantile(0.5, latency), let p99 = quantile(0.99, latency) {
    print(String(format: "postback-to-event latency: p50 %.1f ms, p99 %.1f ms (bridge histogram, interpolated in its buckets)", p50 * 1000, p99 * 1000))
} else {
    print("postback-to-event latency: no histogram in /metrics")
}
if let submitRequests, submitRequests > 0 {
    print(String(format: "submissions: %d HTTP requests to the simulator, %.1f jobs each", submitRequests,
        Double(options.count) / Double(submitRequests)))
}
if deadlineMessages > 0 {
    print(String(format: "deadline messages: %d, %.1f jobs each", deadlineMessages, Double(options.count) / Double(deadlineMessages)))
}
print(String(format: "bridge peak RSS: %.1f MiB", Double(rss) / 1024))
print(String(format: "CPU seconds during the run: bridge %.2f, simulator %.2f, broker %@, bench %.2f (of %.2f available on %d cores)",
    cpu.bridge, cpu.simulator, cpu.broker.map { String(format: "%.2f", $0) } ?? "n/a", cpu.bench,
    bridgeSeconds * Double(ProcessInfo.processInfo.activeProcessorCount), ProcessInfo.processInfo.activeProcessorCount))

// The broker's ceiling for the same pattern, with the AMQP module alone: consume each request,
// publish a deadline message for as many jobs as the bridge's held, and each request's event (which
// the stream and the collector both receive), acknowledge; collect every event.
let ceilingJobs = "\(run).ceiling.jobs", deadlines = "\(run).ceiling.deadlines", stream = "\(run).ceiling.stream"
try await channel.declareQueue(ceilingJobs, durable: true, arguments: queueKind)
try await channel.declareQueue(deadlines, durable: true, arguments: queueKind)
try await channel.declareQueue(stream, durable: true, arguments: ["x-queue-type": .string("stream")])
try await channel.bindQueue(stream, exchange: exchange, routingKey: "job.#")
try await channel.purgeQueue(eventsQueue)
try await publishRequests(channel, queue: ceilingJobs, count: options.count)
let worker = try await AMQPConnection.connect(nodes.configurations[0])
let workerPublisher = try await AMQPConnection.connect(nodes.configurations[0])
let publishing = try await workerPublisher.openChannel()
try await publishing.enableConfirms()
started = ContinuousClock.now
let ceilingBrokerCPUBefore = brokerCPUSeconds(broker) ?? 0
let workerTask = Task {
    let consuming = try await worker.openChannel()
    try await withThrowingDiscardingTaskGroup { group in
        var handled = 0
        for try await delivery in try await consuming.consume(queue: ceilingJobs, prefetch: UInt16(options.prefetch)) {
            handled += 1
            let last = handled == options.count
            let startsDeadline = handled % jobsPerDeadline == 1 % jobsPerDeadline
            group.addTask {
                let id = delivery.properties.messageID ?? ""
                if startsDeadline {
                    try await publishing.publish(
                        delivery.body, routingKey: deadlines,
                        properties: AMQPProperties(deliveryMode: 2, expiration: "1800000", messageID: id + "/deadline"))
                }
                try await publishing.publish(
                    delivery.body, exchange: exchange, routingKey: "job.completed",
                    properties: AMQPProperties(contentType: "application/cloudevents+json", deliveryMode: 2, messageID: id + "/completed"))
                delivery.ack()
            }
            if last { break }
        }
    }
}
let (ceilingLast, _, _) = try await collectEvents(reader, queue: eventsQueue, count: options.count)
try await workerTask.value
let ceilingSeconds = seconds(ceilingLast - started)
let ceilingBrokerCPU = brokerCPUSeconds(broker).map { $0 - ceilingBrokerCPUBefore }
print(String(format: "AMQP module alone, same pattern: %.0f jobs/s (%.2f s)", Double(options.count) / ceilingSeconds, ceilingSeconds))
if let brokerCPU = cpu.broker, let ceilingBrokerCPU {
    print(String(format: "broker CPU per job: %.0f µs driven by the bridge, %.0f µs by the AMQP-only ceiling (%.2f×)",
        brokerCPU / Double(options.count) * 1e6, ceilingBrokerCPU / Double(options.count) * 1e6, brokerCPU / ceilingBrokerCPU))
}
print(String(format: "bridge CPU per job: %.0f µs", cpu.bridge / Double(options.count) * 1e6))
print(String(format: "bridge/ceiling: %.2f", ceilingSeconds / bridgeSeconds))
print("logs: \(logs)")

for queue in [eventsQueue, ceilingJobs, deadlines, stream] { _ = try? await channel.deleteQueue(queue) }
await deleteTopology(channel, jobsQueue: jobsQueue, exchange: exchange, deadlines: ".deadlines.1810s")
await worker.close()
await workerPublisher.close()
await connection.close()
