// amqp-bench: what the AMQP module reaches against a broker, next to librabbitmq driven from C.
//
// Both publish COUNT persistent messages of SIZE bytes to a durable queue with publisher confirms
// (WINDOW unconfirmed at most), then consume them with manual acknowledgements (prefetch PREFETCH,
// a multiple ack every 50). Each figure is the best of ROUNDS runs; the clients take turns going
// first. The last line compares them:
// `ratio swift/c: publish=0.NN consume=0.NN`.
//
// usage: amqp-bench [--url URL] [--count 100000] [--size 1024] [--window 1000] [--prefetch 300] [--rounds 4]
import AMQP
import Foundation

struct Options {
    var url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F"
    var count = 100_000
    var size = 1024
    var window = 1000
    var prefetch = 300
    var rounds = 4

    init(_ arguments: ArraySlice<String>) {
        var arguments = arguments
        while let flag = arguments.popFirst() {
            guard let value = arguments.popFirst() else { Self.usage("\(flag) needs a value") }
            switch flag {
            case "--url": url = value
            case "--count": count = Self.number(flag, value)
            case "--size": size = Self.number(flag, value)
            case "--window": window = Self.number(flag, value)
            case "--prefetch": prefetch = Self.number(flag, value)
            case "--rounds": rounds = Self.number(flag, value)
            default: Self.usage("unknown option \(flag)")
            }
        }
    }

    static func number(_ flag: String, _ value: String) -> Int {
        guard let number = Int(value), number > 0 else { usage("\(flag) takes a positive whole number") }
        return number
    }

    static func usage(_ problem: String) -> Never {
        FileHandle.standardError.write(Data("amqp-bench: \(problem)\nusage: amqp-bench [--url URL] [--count N] [--size BYTES] [--window N] [--prefetch N] [--rounds N]\n".utf8))
        exit(2)
    }
}

/// CPU seconds this process has used (user + system).
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func rate(_ count: Int, since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(count) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

func swiftPublish(_ options: Options, queue: String) async throws -> Double {
    let connection = try await AMQPConnection.connect(url: options.url)
    let channel = try await connection.openChannel()
    try await channel.enableConfirms()
    let body = [UInt8](repeating: UInt8(ascii: "x"), count: options.size)
    let properties = AMQPProperties(contentType: "application/octet-stream", deliveryMode: AMQPProperties.persistent)
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
            next += 1
            group.addTask { try await channel.publish(body, routingKey: queue, properties: properties) }
        }
        while next < min(options.window, options.count) { add() }
        while try await group.next() != nil {
            if next < options.count { add() }
        }
    }
    let result = rate(options.count, since: start)
    await connection.close()
    return result
}

func swiftConsume(_ options: Options, queue: String) async throws -> Double {
    let connection = try await AMQPConnection.connect(url: options.url)
    let channel = try await connection.openChannel()
    var received = 0
    let start = ContinuousClock.now
    for try await delivery in try await channel.consume(queue: queue, prefetch: UInt16(options.prefetch)) {
        received += 1
        if received % 50 == 0 || received == options.count { delivery.ack(multiple: true) }
        if received == options.count { break }
    }
    let result = rate(options.count, since: start)
    await connection.close()
    return result
}

/// Runs the C yardstick, built beside this executable.
func cRun(_ options: Options, queue: String) throws -> (publish: Double, consume: Double, publishCPU: Double, consumeCPU: Double) {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("amqp-bench-c")
    let process = Process()
    process.executableURL = executable
    process.arguments = [options.url, queue] + [options.count, options.size, options.window, options.prefetch].map(String.init)
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw AMQPError(.protocolError, "amqp-bench-c failed") }
    func figure(_ label: String, _ field: Int) -> Double {
        text.split(separator: "\n").first { $0.hasPrefix(label) }
            .flatMap { Double($0.split(separator: " ")[field]) } ?? 0
    }
    return (figure("c publish:", 2), figure("c consume:", 2), figure("c publish:", 4), figure("c consume:", 4))
}

let options = Options(CommandLine.arguments.dropFirst())
let queue = "amqp-bench.\(ProcessInfo.processInfo.processIdentifier)"
let setup = try await AMQPConnection.connect(url: options.url)
let admin = try await setup.openChannel()
try await admin.declareQueue(queue, durable: true)
try await admin.purgeQueue(queue)
print("amqp-bench: \(options.count) persistent \(options.size)-byte messages, durable queue, confirm window \(options.window), prefetch \(options.prefetch), best of \(options.rounds)")

var best = (swiftPublish: 0.0, swiftConsume: 0.0, cPublish: 0.0, cConsume: 0.0)
for round in 1...options.rounds {
    // Alternate which client goes first, so neither always meets the broker in the same state.
    var c = (publish: 0.0, consume: 0.0, publishCPU: 0.0, consumeCPU: 0.0)
    if round % 2 == 0 { c = try cRun(options, queue: queue) }
    var cpu = cpuSeconds()
    let swiftPublished = try await swiftPublish(options, queue: queue)
    let publishCPU = (cpuSeconds() - cpu) * 1e6 / Double(options.count)
    cpu = cpuSeconds()
    let swiftConsumed = try await swiftConsume(options, queue: queue)
    let consumeCPU = (cpuSeconds() - cpu) * 1e6 / Double(options.count)
    if round % 2 == 1 { c = try cRun(options, queue: queue) }
    print(String(format: "round %d: publish swift %.0f msg/s (%.1f µs CPU/msg) c %.0f msg/s (%.1f µs); consume swift %.0f msg/s (%.1f µs) c %.0f msg/s (%.1f µs)", round, swiftPublished, publishCPU, c.publish, c.publishCPU, swiftConsumed, consumeCPU, c.consume, c.consumeCPU))
    best = (max(best.swiftPublish, swiftPublished), max(best.swiftConsume, swiftConsumed), max(best.cPublish, c.publish), max(best.cConsume, c.consume))
}
try await admin.deleteQueue(queue)
await setup.close()
print(String(format: "swift publish: %.0f msg/s", best.swiftPublish))
print(String(format: "swift consume: %.0f msg/s", best.swiftConsume))
print(String(format: "c publish: %.0f msg/s", best.cPublish))
print(String(format: "c consume: %.0f msg/s", best.cConsume))
print(String(format: "ratio swift/c: publish=%.2f consume=%.2f", best.swiftPublish / best.cPublish, best.swiftConsume / best.cConsume))
