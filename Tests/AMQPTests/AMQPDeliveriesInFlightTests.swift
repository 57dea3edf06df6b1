import AMQP
import Testing
import TestSupport

/// A consumer with a large prefetch keeps deliveries in flight: the broker goes on sending while a
/// channel closes or a consumer is cancelled. What arrives then must not cost the connection (and
/// its other channels, consumers and confirms) or a message.
@Suite struct AMQPDeliveriesInFlightTests {
    static let count = 20_000
    /// Read before the channel closes or the consumer is cancelled.
    static let read = 300

    /// As the outcomes ledger's backfill does: acks with `multiple` (fresh credit for as many
    /// more), then closes the channel while those are on their way.
    @Test(arguments: [QueueKind.classic, .stream])
    func closingAChannelWithDeliveriesInFlightKeepsTheConnection(_ kind: QueueKind) async throws {
        try await withCleanup { cleanup in
            let consuming = try await Self.consuming(kind, named: "close-in-flight", cleanup)
            try await consuming.channel.close()

            try await Self.expectAlive(consuming.connection)
            try await Self.expectReady(Self.count - Self.read, in: consuming)
        }
    }

    /// A consumer cancelled with deliveries in flight on a channel that stays open: on a classic
    /// queue they go back to the queue; on a stream, which refuses `basic.reject`, nothing closes.
    @Test(arguments: [QueueKind.classic, .stream])
    func cancellingAConsumerWithDeliveriesInFlightKeepsTheChannel(_ kind: QueueKind) async throws {
        try await withCleanup { cleanup in
            var consuming = try await Self.consuming(kind, named: "cancel-in-flight", cleanup)
            try await consuming.channel.cancel(consuming.consumer)
            // What reached the consumer before the cancel: acknowledged, as an application would.
            var acknowledged = Self.read
            while let delivery = try await consuming.deliveries.next() {
                delivery.ack()
                acknowledged += 1
            }

            try await Self.expectAlive(consuming.connection)
            #expect(
                try await consuming.channel.declareQueue(consuming.queue, passive: true).name == consuming.queue,
                "the channel closed")
            try await Self.expectReady(Self.count - acknowledged, in: consuming)
        }
    }

    /// A channel opened while another closes with deliveries on their way, both in one pass of
    /// the connection's thread: what the broker sent the closing channel never reaches the new
    /// one, which would reject deliveries it never had (406) or take their confirms for its own.
    @Test func aChannelOpenedWhileAnotherClosesGetsNoneOfItsFrames() async throws {
        try await withCleanup { cleanup in
            let (_, queue) = try await Self.queue(of: .classic, named: "reopen-in-flight", cleanup)
            let connection = try await cleanup.connect()
            for round in 1...5 {
                let closing = try await connection.openChannel()
                let consumer = try await closing.consume(queue: queue, prefetch: 1000)
                var deliveries = consumer.makeAsyncIterator()
                _ = try #require(try await deliveries.next())
                async let closed: Void = closing.close()
                async let opened = connection.openChannel()
                let (fresh, _) = try await (opened, closed)
                try await Task.sleep(for: .milliseconds(300))
                #expect(
                    try await fresh.declareQueue(queue, passive: true).name == queue,
                    "round \(round): the new channel was closed")
                try await fresh.close()
            }
            try await Self.expectAlive(connection)
        }
    }

    enum QueueKind: String, CustomTestStringConvertible, Sendable {
        case classic, stream

        var testDescription: String { rawValue }

        var consumeArguments: AMQPTable {
            self == .stream ? ["x-stream-offset": .int64(0)] : [:]
        }
    }

    /// A queue of `count` small messages, published and checked on a connection of its own.
    static func queue(
        of kind: QueueKind, named name: String, _ cleanup: Cleanup
    ) async throws -> (admin: AMQPChannel, queue: String) {
        let admin = try await cleanup.connect().openChannel()
        let queue = TestBroker.uniqueName("\(name)-\(kind)")
        try await admin.declareQueue(
            queue, durable: kind == .stream, arguments: kind == .stream ? ["x-queue-type": .string("stream")] : [:])
        cleanup.add { _ = try? await admin.deleteQueue(queue) }
        try await admin.enableConfirms()
        try await publishAll(admin, count: count, window: 1000, routingKey: queue) { index in
            (Array("\(index)".utf8), AMQPProperties())
        }
        return (admin, queue)
    }

    /// A queue of `kind` with `count` messages, a consumer on a connection of its own with a
    /// prefetch of 1000, and `read` of them read and acknowledged.
    struct Consuming {
        let kind: QueueKind
        let admin: AMQPChannel
        let queue: String
        let connection: AMQPConnection
        let channel: AMQPChannel
        let consumer: AMQPConsumer
        var deliveries: AMQPConsumer.Iterator
    }

    static func consuming(_ kind: QueueKind, named name: String, _ cleanup: Cleanup) async throws -> Consuming {
        let (admin, queue) = try await Self.queue(of: kind, named: name, cleanup)
        let connection = try await cleanup.connect()
        let channel = try await connection.openChannel()
        let consumer = try await channel.consume(queue: queue, prefetch: 1000, arguments: kind.consumeArguments)
        var deliveries = consumer.makeAsyncIterator()
        try await Self.readAcking(Self.read, from: &deliveries)
        return Consuming(
            kind: kind, admin: admin, queue: queue, connection: connection, channel: channel, consumer: consumer,
            deliveries: deliveries)
    }

    /// On a classic queue, every message not acknowledged is back in the queue, ready.
    static func expectReady(_ notAcknowledged: Int, in consuming: Consuming) async throws {
        guard consuming.kind == .classic else { return }
        var ready: UInt32?
        #expect(
            try await eventually {
                ready = try await consuming.admin.declareQueue(consuming.queue, passive: true).messageCount
                return ready == UInt32(notAcknowledged)
            }, "\(String(describing: ready)) ready, \(notAcknowledged) not acknowledged")
    }

    /// Reads `count` deliveries, acknowledging with `multiple` every 100 and the last one, as the
    /// outcomes ledger does.
    static func readAcking(_ count: Int, from deliveries: inout AMQPConsumer.Iterator) async throws {
        for index in 1...count {
            let delivery = try #require(try await deliveries.next())
            if index % 100 == 0 || index == count { delivery.ack(multiple: true) }
        }
    }

    /// The connection is still open a moment later: it has no close reason and a new channel on
    /// it can declare a queue.
    static func expectAlive(_ connection: AMQPConnection) async throws {
        try await Task.sleep(for: .milliseconds(500))
        let reason = connection.closeReason
        try #require(reason == nil, "the connection closed: \(String(describing: reason))")
        let probe = try await connection.openChannel()
        try await probe.declareQueue("", durable: false, exclusive: true)
        try await probe.close()
    }
}
