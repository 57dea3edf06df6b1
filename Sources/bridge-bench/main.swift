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
// Several URLs are the nodes of one cluster (the bridge is given them all). The broker's CPU is read
// from the throwaway nodes' pid files: BROKER_DIR (deploy/rabbitmq-node.sh) or CLUSTER_DIR
// (deploy/rabbitmq-cluster.sh).
import AMQP
import Blitline
import Foundation

struct Options {
    var url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F"
    var bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    var count = 20_000
    var prefetch = 1024
    var queueType = "quorum"

    init() {
        var arguments = CommandLine.arguments.dropFirst()
        while let flag = arguments.popFirst() {
            guard let value = arguments.popFirst() else { fail("\(flag) needs a value") }
            switch flag {
            case "--url": url = value
            case "--bin": bin = value
            case "--count": count = Int(value) ?? count
            case "--prefetch": prefetch = Int(value) ?? prefetch
            case "--queue-type" where value == "quorum" || value == "classic": queueType = value
            default: fail("unknown option \(flag)")
            }
        }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("bridge-bench: \(message)\n".utf8))
    exit(1)
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

func start(_ executable: String, _ arguments: [String], environment: [String: String] = [:], log: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    let handle = FileHandle(forWritingAtPath: log)
    process.standardError = handle
    process.standardOutput = handle
    try process.run()
    return process
}

func httpGet(_ url: String) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = ["-sf", "--max-time", "2", url]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
}

/// Cumulative bucket counts of a Prometheus histogram: upper bound → count.
func histogram(_ metrics: String, _ name: String) -> [(Double, Double)] {
    metrics.split(separator: "\n").compactMap { line -> (Double, Double)? in
        guard line.hasPrefix(name + "_bucket{"), let le = line.range(of: "le=\"") else { return nil }
        let bound = line[le.upperBound...].prefix { $0 != "\"" }
        guard let count = Double(line.split(separator: " ").last ?? "") else { return nil }
        return (bound == "+Inf" ? .infinity : Double(bound) ?? .infinity, count)
    }.sorted { $0.0 < $1.0 }
}

/// The quantile from cumulative buckets, interpolated linearly inside its bucket.
func quantile(_ q: Double, _ buckets: [(Double, Double)]) -> Double? {
    guard let total = buckets.last?.1, total > 0 else { return nil }
    let rank = q * total
    var previous = (0.0, 0.0)
    for bucket in buckets {
        if bucket.1 >= rank {
            guard bucket.0.isFinite else { return previous.0 }
            let inside = bucket.1 - previous.1
            return previous.0 + (bucket.0 - previous.0) * (inside > 0 ? (rank - previous.1) / inside : 1)
        }
        previous = bucket
    }
    return nil
}

func peakRSS(_ pid: Int32) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}

/// CPU seconds (user + system) a process has used, from /proc.
func cpuSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The broker's processes, when they are the throwaway node of deploy/rabbitmq-node.sh or the
/// three nodes of deploy/rabbitmq-cluster.sh.
func brokerPIDs() -> [Int32] {
    let environment = ProcessInfo.processInfo.environment
    let files =
        if let cluster = environment["CLUSTER_DIR"] { (1...3).map { "\(cluster)/node\($0)/rabbitmq.pid" } }
        else if let node = environment["BROKER_DIR"] { [node + "/rabbitmq.pid"] }
        else { [String]() }
    return files.compactMap { file in
        (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

/// The CPU seconds all of the broker's nodes used so far.
func brokerCPUSeconds(_ pids: [Int32]) -> Double? {
    pids.isEmpty ? nil : pids.map(cpuSeconds).reduce(0, +)
}

/// Waits until the bridge answers 200 on `/readyz`.
func waitUntilReady(_ port: Int) async throws {
    for _ in 0..<300 {
        if httpGet("http://127.0.0.1:\(port)/readyz") != nil { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    fail("the bridge did not become ready; see its log")
}

func job(_ index: Int) -> [UInt8] {
    Array("""
        {"src":"https://example.com/images/\(index).jpg","functions":[{"name":"resize_to_fit","params":{"width":640},"save":{"image_identifier":"large"},"functions":[{"name":"crop_to_square","params":{},"save":{"image_identifier":"thumb"}}]}]}
        """.utf8)
}

/// Publishes `count` requests with confirms, a window of 1000 at a time.
func publishRequests(_ channel: AMQPChannel, queue: String, count: Int) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
            let index = next
            next += 1
            group.addTask {
                try await channel.publish(
                    job(index), routingKey: queue,
                    properties: AMQPProperties(contentType: "application/json", deliveryMode: 2, messageID: "bench-\(index)"))
            }
        }
        while next < min(1000, count) { add() }
        while try await group.next() != nil { if next < count { add() } }
    }
}

/// Waits until the queue starts draining; returns when it did.
func firstConsumed(_ channel: AMQPChannel, queue: String, count: Int) async throws -> ContinuousClock.Instant {
    while try await channel.declareQueue(queue, passive: true).messageCount >= UInt32(count) {
        try await Task.sleep(for: .milliseconds(2))
    }
    return .now
}

/// Collects `count` events; returns when the last arrived and how many ids were distinct.
func collectEvents(_ channel: AMQPChannel, queue: String, count: Int) async throws -> (ContinuousClock.Instant, Int, Int) {
    var ids = Set<String>()
    var completed = 0
    for try await delivery in try await channel.consume(queue: queue, prefetch: 1000) {
        if let id = delivery.properties.messageID { ids.insert(id) }
        if delivery.routingKey == "job.completed" { completed += 1 }
        if ids.count % 100 == 0 || ids.count == count { delivery.ack(multiple: true) }
        if ids.count == count { break }
    }
    return (.now, ids.count, completed)
}

let options = Options()
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
print("bridge-bench: \(options.count) requests, prefetch \(options.prefetch), \(options.queueType) queues, \(nodes.configurations.count) broker node(s); machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB")

let logs = NSTemporaryDirectory() + run
try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
let simulatorPort = freePort(), bridgePort = freePort()
let simulator = try start(
    options.bin + "/blitline-simulator",
    ["--port", "\(simulatorPort)", "--processing-delay", "1ms", "--log-level", "warning", "--poll-rate", "1000"],
    log: logs + "/simulator.log")
let bridgeEnvironment = [
    "AMQP_URL": options.url, "BLITLINE_API_URL": "http://127.0.0.1:\(simulatorPort)",
    "BLITLINE_POLL_URL": "http://127.0.0.1:\(simulatorPort)", "BLITLINE_APPLICATION_ID": "bench",
    "LISTEN_ADDRESS": "127.0.0.1:\(bridgePort)", "POSTBACK_BASE_URL": "http://127.0.0.1:\(bridgePort)",
    "POSTBACK_SECRET": "bench-secret-bench-secret-bench-secret", "JOBS_QUEUE": jobsQueue,
    "EVENTS_EXCHANGE": exchange, "PREFETCH": "\(options.prefetch)", "LOG_LEVEL": "warning",
    "QUEUE_TYPE": options.queueType,
]
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

for queue in [jobsQueue, eventsQueue, ceilingJobs, deadlines, stream] { _ = try? await channel.deleteQueue(queue) }
for suffix in [".dead", ".deadlines.1810s", ".timeouts", ".polls", ".polls.wait", ".outcomes", ".retry.1s", ".retry.5s", ".retry.30s", ".retry.2m"] {
    _ = try? await channel.deleteQueue(jobsQueue + suffix)
}
try? await channel.deleteExchange(exchange)
await worker.close()
await workerPublisher.close()
await connection.close()
