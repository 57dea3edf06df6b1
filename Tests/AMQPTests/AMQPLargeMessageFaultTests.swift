import AMQP
import Foundation
import Testing
import TestSupport

/// Bodies over a consumer's limit are dropped unread. The suite measures the process's memory, so
/// it runs with the …FaultTests, one test at a time, with nothing else allocating beside it.
@Suite(.serialized) struct AMQPLargeMessageFaultTests {
    @Test func aBodyOverTheLimitIsDroppedFrameByFrameAndTheMessagesAroundItArrive() async throws {
        try await withCleanup { cleanup in
            let publisher = try await cleanup.connect()
            let consuming = try await cleanup.connect()
            let channel = try await publisher.openChannel()
            let queue = TestBroker.uniqueName("large")
            try await channel.declareQueue(queue, durable: false)
            cleanup.add { _ = try? await channel.deleteQueue(queue) }
            try await channel.enableConfirms()

            let size = 20 << 20
            try await channel.publish(Array("before".utf8), routingKey: queue)
            try await Self.publishLarge(channel, size: size, routingKey: queue)
            try await channel.publish(Array("after".utf8), routingKey: queue)

            let memory = try ProcessMemory.startMeasuring()
            let consumer = try await consuming.openChannel().consume(queue: queue, prefetch: 10, maxBodyBytes: 1_000_000)
            var deliveries: [AMQPDelivery] = []
            for try await delivery in consumer {
                deliveries.append(delivery)
                if deliveries.count == 3 { break }
            }
            let growth = try memory.peakGrowth()
            if ProcessInfo.processInfo.environment["AMQP_TEST_REPORT_MEMORY"] != nil {
                print("peak resident growth while consuming: \(growth >> 10) KiB")
            }

            try #require(deliveries.count == 3)
            // Counts first: a 20 MiB body in a failure message would drown the log.
            #expect(deliveries.map(\.body.count) == [6, 0, 5])
            #expect(deliveries[0].body == Array("before".utf8) && deliveries[2].body == Array("after".utf8))
            #expect(deliveries.map(\.isBodyDiscarded) == [false, true, false])
            #expect(deliveries.map(\.bodySize) == [6, UInt64(size), 5])
            // The body itself would be 20 MiB (40 with librabbitmq's copy): a few MiB is noise.
            #expect(growth < 8 << 20, "resident memory grew by \(growth >> 10) KiB while a 20 MiB body was dropped")

            deliveries[1].ack()
            deliveries[0].ack()
            deliveries[2].ack()
            #expect(
                try await eventually { try await channel.declareQueue(queue, passive: true).messageCount == 0 })
            #expect(consuming.closeReason == nil)
        }
    }

    /// Publishes `size` bytes; the array is gone once this returns.
    static func publishLarge(_ channel: AMQPChannel, size: Int, routingKey: String) async throws {
        try await channel.publish([UInt8](repeating: 0x5A, count: size), routingKey: routingKey)
    }
}

/// Resident memory of this process, from /proc/self.
struct ProcessMemory {
    let baseline: Int

    /// Resets the peak (VmHWM) to the current resident size and remembers that size.
    static func startMeasuring() throws -> ProcessMemory {
        try "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        return ProcessMemory(baseline: try value("VmRSS"))
    }

    /// How far the peak rose above the baseline, in bytes.
    func peakGrowth() throws -> Int { try Self.value("VmHWM") - baseline }

    static func value(_ field: String) throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix(field + ":") })
        let kilobytes = try #require(Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? ""))
        return kilobytes << 10
    }
}
