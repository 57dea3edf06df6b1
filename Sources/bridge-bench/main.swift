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
//                     [--postback-connections 32] [--fresh-postback-connections] [--bridge-only]
//        bridge-bench ... --backlog N                    (Backlog.swift)
//        bridge-bench ... --soak SECONDS [--rate 200]    (Soak.swift)
//        bridge-bench ... --listener-floor SECONDS [--rate 2000] [--postback-connections 32]   (ListenerFloor.swift)
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
if let listenerFloorSeconds = options.listenerFloorSeconds {
    try await runListenerFloor(options, seconds: listenerFloorSeconds)
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
print("bridge-bench: \(options.count) requests, prefetch \(options.prefetch), \(options.queueType) queues, \(nodes.configurations.count) broker node(s), postbacks over \(options.freshPostbackConnections ? "a fresh connection each" : "up to \(options.postbackConnections) keep-alive connections"); " + machine)

let logs = try logFolder(run)
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
let declaring = try await startBridge(options, environment: bridgeEnvironment, port: bridgePort, log: logs + "/declare.log")
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
let submitRequests: Int? = httpGet("http://127.0.0.1:\(simulatorPort)/_control/stats").flatMap { stats in
    (try? JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any])?["submit_requests"] as? Int
}
// A plain relay is paced like the bridge: its jobs come back in bursts of one submission's size.
let jobsPerSubmission = submitRequests.map { max(1, Int((Double(options.count) / Double(max($0, 1))).rounded())) } ?? 1
let bridgeThreads = cpuSecondsByThread(bridge.processIdentifier)
let cpu = (
    bridge: cpuSeconds(bridge.processIdentifier), simulator: cpuSeconds(simulator.processIdentifier),
    broker: brokerCPUSeconds(broker).map { $0 - brokerCPUBefore }, bench: cpuSeconds(getpid()) - selfCPUBefore)
bridge.terminate()
bridge.waitUntilExit()
simulator.terminate()
// Counted once the CPU figures are taken: reading the stream back costs the broker too.
let records = (try? await streamMessageCount(connection, publishingWith: channel, stream: jobsQueue + ".outcomes")) ?? 0
let jobsPerRecord = records > 0 ? max(1, Int((Double(options.count) / Double(records)).rounded())) : jobsPerDeadline

print(String(format: "bridge: %.0f jobs/s (%d events, %d completed, %d distinct ids, %.2f s from first request consumed to last event)",
    Double(options.count) / bridgeSeconds, options.count, completed, distinct, bridgeSeconds))
printLatency(latency)
if let submitRequests, submitRequests > 0 {
    print(String(format: "submissions: %d HTTP requests to the simulator, %.1f jobs each", submitRequests,
        Double(options.count) / Double(submitRequests)))
}
if deadlineMessages > 0 {
    print(String(format: "deadline messages: %d, %.1f jobs each", deadlineMessages, Double(options.count) / Double(deadlineMessages)))
}
if records > 0 {
    print(String(format: "outcomes stream: %d messages, %.1f events each", records, Double(options.count) / Double(records)))
}
print(String(format: "bridge peak RSS: %.1f MiB", Double(rss) / 1024))
print(String(format: "CPU seconds during the run: bridge %.2f, simulator %.2f, broker %@, bench %.2f (of %.2f available on %d cores)",
    cpu.bridge, cpu.simulator, cpu.broker.map { String(format: "%.2f", $0) } ?? "n/a", cpu.bench,
    bridgeSeconds * Double(ProcessInfo.processInfo.activeProcessorCount), ProcessInfo.processInfo.activeProcessorCount))
print("bridge CPU per job by thread: " + bridgeThreads.map {
    String(format: "%@ %.0f µs", $0.kind, $0.seconds / Double(options.count) * 1e6)
}.joined(separator: ", "))

if options.bridgeOnly {
    print(String(format: "bridge CPU per job: %.0f µs; broker CPU per job: %@", cpu.bridge / Double(options.count) * 1e6,
        cpu.broker.map { String(format: "%.0f µs", $0 / Double(options.count) * 1e6) } ?? "n/a"))
    _ = try? await channel.deleteQueue(eventsQueue)
    await deleteTopology(channel, jobsQueue: jobsQueue, exchange: exchange, deadlines: ".deadlines.1810s")
    exit(0)
}

// The broker's work for the same requests driven by the AMQP module alone: the bridge's message
// pattern as fast as it goes (the ceiling), then, at the bridge's own rate and burst size, a plain
// relay and the two parts of the bridge's pattern added one at a time (what each costs the broker).
let ceiling = try await relay(
    RelayPattern(jobsPerRecord: jobsPerRecord, jobsPerDeadline: jobsPerDeadline), count: options.count, prefetch: options.prefetch, pace: nil,
    queueKind: queueKind, exchange: exchange, eventsQueue: eventsQueue, run: run, nodes: nodes, admin: channel,
    collector: reader, broker: broker)
print(String(format: "AMQP module alone, same pattern: %.0f jobs/s (%.2f s)", Double(options.count) / ceiling.seconds, ceiling.seconds))
func perJob(_ cpu: Double?) -> String { cpu.map { String(format: "%.0f µs", $0 / Double(options.count) * 1e6) } ?? "n/a" }
print("broker CPU per job: \(perJob(cpu.broker)) driven by the bridge, \(perJob(ceiling.brokerCPU)) by the AMQP-only ceiling")
print("broker CPU per job at the bridge's rate, \(jobsPerSubmission) requests at a time:")
var plainBrokerCPU: Double?
for pattern in [RelayPattern.plain, RelayPattern(jobsPerRecord: jobsPerRecord), RelayPattern(jobsPerRecord: jobsPerRecord, jobsPerDeadline: jobsPerDeadline)] {
    let paced = try await relay(
        pattern, count: options.count, prefetch: options.prefetch,
        pace: (Double(options.count) / bridgeSeconds, burst: jobsPerSubmission), queueKind: queueKind,
        exchange: exchange, eventsQueue: eventsQueue, run: run, nodes: nodes, admin: channel, collector: reader,
        broker: broker)
    if pattern.jobsPerRecord == nil { plainBrokerCPU = paced.brokerCPU }
    print("  \(perJob(paced.brokerCPU)) by \(pattern)")
}
if let bridge = cpu.broker, let plainBrokerCPU {
    print(String(format: "  the bridge drives the broker at %.2f× a plain relay", bridge / plainBrokerCPU))
}
// Postbacks over fresh connections reach the bridge one by one rather than a submission's worth at
// once, and it publishes their events so: the same relay, released one request at a time.
let single = try await relay(
    .plain, count: options.count, prefetch: options.prefetch, pace: (Double(options.count) / bridgeSeconds, burst: 1),
    queueKind: queueKind, exchange: exchange, eventsQueue: eventsQueue, run: run, nodes: nodes, admin: channel,
    collector: reader, broker: broker)
print("  \(perJob(single.brokerCPU)) by a plain relay released one request at a time")
print(String(format: "bridge CPU per job: %.0f µs", cpu.bridge / Double(options.count) * 1e6))
print(String(format: "bridge/ceiling: %.2f", ceiling.seconds / bridgeSeconds))
print("logs: \(logs)")

_ = try? await channel.deleteQueue(eventsQueue)
await deleteTopology(channel, jobsQueue: jobsQueue, exchange: exchange, deadlines: ".deadlines.1810s")
await connection.close()
