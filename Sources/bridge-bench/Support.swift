import AMQP
import Foundation
import Synchronization

struct Options {
    var url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F"
    var bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    var count = 20_000
    var prefetch = 1024
    var queueType = "quorum"
    /// `--backlog N`: a restart onto N outcomes in the stream (Backlog.swift).
    var backlog: Int?
    /// `--soak SECONDS` at `--rate` requests per second, 200 unless given (Soak.swift).
    var soakSeconds: Int?
    /// `--listener-floor SECONDS` at `--rate` requests per second, 2,000 unless given (ListenerFloor.swift).
    var listenerFloorSeconds: Int?
    var rate: Int?
    /// The simulator's postback connections: keep-alive ones at once per host, or one per postback.
    var postbackConnections = 32
    var freshPostbackConnections = false
    /// `--bridge-only`: no relay runs after the bridge's (for A/B runs of the bridge alone).
    var bridgeOnly = false

    init() {
        var arguments = CommandLine.arguments.dropFirst()
        while let flag = arguments.popFirst() {
            if flag == "--fresh-postback-connections" || flag == "--bridge-only" {
                if flag == "--bridge-only" { bridgeOnly = true } else { freshPostbackConnections = true }
                continue
            }
            guard let value = arguments.popFirst() else { fail("\(flag) needs a value") }
            switch flag {
            case "--url": url = value
            case "--bin": bin = value
            case "--count": count = Int(value) ?? count
            case "--prefetch": prefetch = Int(value) ?? prefetch
            case "--queue-type" where value == "quorum" || value == "classic": queueType = value
            case "--backlog": backlog = Int(value)
            case "--soak": soakSeconds = Int(value)
            case "--listener-floor": listenerFloorSeconds = Int(value)
            case "--rate": rate = Int(value)
            case "--postback-connections": postbackConnections = Int(value) ?? postbackConnections
            default: fail("unknown option \(flag)")
            }
        }
    }
}

/// Prints `message`, stops the processes `start` launched (`exit` would leave them running) and
/// exits with 1.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("bridge-bench: \(message)\n".utf8))
    for process in launched.withLock({ $0 }) where process.isRunning { process.terminate() }
    exit(1)
}

/// The processes `start` launched (bridges, simulators), for `fail` to stop.
private let launched = Mutex<[Process]>([])

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// 127.0.0.1 at `port` (0: one the system picks).
func loopback(port: Int = 0) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = loopback()
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
    launched.withLock { $0.append(process) }
    return process
}

func httpGet(_ url: String) -> String? { curl(["--max-time", "2", url]) }

func httpPost(_ url: String, _ json: String) -> String? {
    curl(["--max-time", "5", "-H", "Content-Type: application/json", "-d", json, url])
}

/// The body curl got, or `nil` when the request failed.
private func curl(_ arguments: [String]) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = ["-sf"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
}

/// The bridge's postback-to-event p50 and p99 from its histogram's cumulative buckets.
func printLatency(_ latency: [(Double, Double)]) {
    if let p50 = quantile(0.5, latency), let p99 = quantile(0.99, latency) {
        print(String(format: "postback-to-event latency: p50 %.1f ms, p99 %.1f ms (bridge histogram, interpolated in its buckets)", p50 * 1000, p99 * 1000))
    } else {
        print("postback-to-event latency: no histogram in /metrics")
    }
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

/// CPU seconds (user + system) a process, or one of its threads, has used, from /proc.
func cpuSeconds(_ pid: Int32, task: String? = nil) -> Double {
    let path = task.map { "/proc/\(pid)/task/\($0)/stat" } ?? "/proc/\(pid)/stat"
    guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// CPU seconds a process's threads have used, by kind: the names SwiftNIO's event loops
/// (`NIO-…`), the Swift concurrency pool (`…qos…`, the tail of `com.apple.root.default-qos`) and
/// the AMQP module (`amqp …`) give their threads; `other` is the rest of the process's CPU,
/// finished threads' included.
func cpuSecondsByThread(_ pid: Int32) -> [(kind: String, seconds: Double)] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    var kinds = ["SwiftNIO": 0.0, "Swift pool": 0.0, "AMQP": 0.0]
    for task in tasks {
        let comm = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8)) ?? ""
        let kind =
            comm.hasPrefix("NIO-") ? "SwiftNIO" : comm.hasPrefix("amqp") ? "AMQP" : comm.contains("qos") ? "Swift pool" : nil
        if let kind { kinds[kind, default: 0] += cpuSeconds(pid, task: task) }
    }
    let named = kinds.values.reduce(0, +)
    return ["SwiftNIO", "Swift pool", "AMQP"].map { ($0, kinds[$0]!) } + [("other", max(0, cpuSeconds(pid) - named))]
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
    pids.isEmpty ? nil : pids.map { cpuSeconds($0) }.reduce(0, +)
}

/// "machine: 2 cores, 23 GiB", which each mode's first line ends with.
let machine = "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"

/// A new folder for run `run`'s logs, in the temporary directory.
func logFolder(_ run: String) throws -> String {
    let logs = NSTemporaryDirectory() + run
    try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
    return logs
}

/// Starts the bridge of `options.bin`, its output in `log`, and waits until it is ready on `port`.
func startBridge(_ options: Options, environment: [String: String], port: Int, log: String) async throws -> Process {
    let bridge = try start(options.bin + "/blitline-bridge", [], environment: environment, log: log)
    try await waitUntilReady(port, log: log)
    return bridge
}

/// Waits until the bridge answers 200 on `/readyz`.
func waitUntilReady(_ port: Int, log: String) async throws {
    for _ in 0..<300 {
        if httpGet("http://127.0.0.1:\(port)/readyz") != nil { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    fail("the bridge did not become ready in 30 s; see \(log)")
}

func job(_ index: Int) -> [UInt8] {
    Array("""
        {"src":"https://example.com/images/\(index).jpg","functions":[{"name":"resize_to_fit","params":{"width":640},"save":{"image_identifier":"large"},"functions":[{"name":"crop_to_square","params":{},"save":{"image_identifier":"thumb"}}]}]}
        """.utf8)
}

/// Publishes `count` requests with confirms, a window of 1000 at a time.
func publishRequests(_ channel: AMQPChannel, queue: String, count: Int) async throws {
    try await publishWindowed(count: count) { index in
        try await channel.publish(
            job(index), routingKey: queue,
            properties: AMQPProperties(contentType: "application/json", deliveryMode: 2, messageID: "bench-\(index)"))
    }
}

/// Runs `publish` for 0..<count, a window of 1000 confirms outstanding.
func publishWindowed(count: Int, _ publish: @escaping @Sendable (Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        while next < min(1000, count) {
            let index = next
            group.addTask { try await publish(index) }
            next += 1
        }
        while try await group.next() != nil, next < count {
            let index = next
            group.addTask { try await publish(index) }
            next += 1
        }
        try await group.waitForAll()
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


/// An outcome record as the bridge writes one (README, Topology): a JSON array of the request ids
/// (plain ASCII here, so not escaped), header `x-bridge-outcome` `settled`.
func outcomeRecord(_ requestIDs: [String], timestamp: UInt64? = nil) -> (body: [UInt8], properties: AMQPProperties) {
    let body = Array(("[" + requestIDs.map { "\"\($0)\"" }.joined(separator: ",") + "]").utf8)
    return (body, AMQPProperties(
        contentType: "application/json", headers: ["x-bridge-outcome": .string("settled")], deliveryMode: 2,
        timestamp: timestamp))
}

/// How many messages `stream` holds: read from its start up to a marker put there now.
func streamMessageCount(_ connection: AMQPConnection, publishingWith publisher: AMQPChannel, stream: String) async throws -> Int {
    let end = "end-\(UUID().uuidString)"
    try await publisher.publish([], routingKey: stream, properties: AMQPProperties(messageID: end))
    let reader = try await connection.openChannel()
    var count = 0
    for try await delivery in try await reader.consume(
        queue: stream, prefetch: 1000, arguments: ["x-stream-offset": .string("first")], maxBodyBytes: 0)
    {
        if delivery.properties.messageID == end {
            delivery.ack(multiple: true)
            break
        }
        count += 1
        if count % 500 == 0 { delivery.ack(multiple: true) }
    }
    try? await reader.close()
    return count
}

/// The bridge's settings for a run against the simulator on `simulatorPort`.
func environmentForBridge(
    _ options: Options, jobsQueue: String, exchange: String, simulatorPort: Int, bridgePort: Int
) -> [String: String] {
    [
        "AMQP_URL": options.url, "BLITLINE_API_URL": "http://127.0.0.1:\(simulatorPort)",
        "BLITLINE_POLL_URL": "http://127.0.0.1:\(simulatorPort)", "BLITLINE_APPLICATION_ID": "bench",
        "LISTEN_ADDRESS": "127.0.0.1:\(bridgePort)", "POSTBACK_BASE_URL": "http://127.0.0.1:\(bridgePort)",
        "POSTBACK_SECRET": "bench-secret-bench-secret-bench-secret", "JOBS_QUEUE": jobsQueue,
        "EVENTS_EXCHANGE": exchange, "PREFETCH": "\(options.prefetch)", "LOG_LEVEL": "warning",
        "QUEUE_TYPE": options.queueType,
    ]
}

/// Resident memory now, in KiB.
func residentKiB(_ pid: Int32) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}

/// Deletes what a run's bridge declared.
func deleteTopology(_ channel: AMQPChannel, jobsQueue: String, exchange: String, deadlines: String) async {
    for suffix in [".dead", deadlines, ".timeouts", ".polls", ".polls.wait", ".outcomes", ".retry.1s", ".retry.5s", ".retry.30s", ".retry.2m", ""] {
        _ = try? await channel.deleteQueue(jobsQueue + suffix)
    }
    try? await channel.deleteExchange(exchange)
}
