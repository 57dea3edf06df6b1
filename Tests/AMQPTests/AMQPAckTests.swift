import AMQP
import TestSupport
import Testing

/// Plain acks are gathered and sent together by the connection's thread (one ack with `multiple`
/// for the oldest deliveries): what the broker settles must still be exactly what was acked.
@Suite struct AMQPAckTests {
    /// Forty deliveries in hand, 38 acked at once from concurrent tasks in no order, the channel
    /// closed right after: the two left unacked, and only they, come back.
    @Test func gatheredAcksSettleExactlyWhatWasAckedAndGoOutBeforeTheClose() async throws {
        try await withCleanup { cleanup in
            let (admin, consuming, inHand) = try await Self.deliveriesInHand(40, named: "gathered-acks", cleanup)
            let keptBack: Set = ["7", "30"]
            await withTaskGroup(of: Void.self) { group in
                for delivery in inHand.shuffled() where !keptBack.contains(delivery.properties.messageID ?? "") {
                    group.addTask { delivery.ack() }
                }
            }
            try await consuming.close()

            var returned: [String] = []
            while let message = try await admin.get(queue: inHand[0].routingKey) {
                returned.append(message.properties.messageID ?? "?")
                #expect(message.redelivered)
                message.ack()
            }
            #expect(Set(returned) == keptBack && returned.count == 2, "came back: \(returned)")
        }
    }

    /// Acks behind a delivery the application keeps cannot go as one ack with `multiple`: with
    /// nothing else happening on the connection, they still reach the broker, one by one.
    @Test func acksBehindADeliveryKeptInHandStillReachTheBroker() async throws {
        try await withCleanup { cleanup in
            let (_, _, inHand) = try await Self.deliveriesInHand(10, named: "acks-kept-back", cleanup)
            let queue = inHand[0].routingKey
            for delivery in inHand.dropFirst() { delivery.ack() }

            func unacknowledged() async throws -> Int? {
                let rows = try await TestBroker.control(
                    "ctl", "-q", "list_queues", "name", "messages_unacknowledged", "--no-table-headers")
                return rows.split(separator: "\n").lazy.map { $0.split(whereSeparator: \.isWhitespace) }
                    .first { $0.first.map(String.init) == queue }.flatMap { $0.last.flatMap { Int($0) } }
            }
            var seen: Int?
            #expect(
                await eventually(timeout: .seconds(10)) {
                    seen = try? await unacknowledged()
                    return seen == 1
                }, "unacknowledged at the broker: \(String(describing: seen))")
            inHand[0].ack()
        }
    }

    /// `count` persistent messages (message ids "0", "1", …) in a durable classic queue of their
    /// own, all delivered to a consumer on a second channel and not yet acknowledged.
    static func deliveriesInHand(
        _ count: Int, named name: String, _ cleanup: Cleanup
    ) async throws -> (admin: AMQPChannel, consuming: AMQPChannel, inHand: [AMQPDelivery]) {
        let connection = try await cleanup.connect()
        let admin = try await connection.openChannel()
        let queue = TestBroker.uniqueName(name)
        try await admin.declareQueue(queue, durable: true)
        cleanup.add { _ = try? await admin.deleteQueue(queue) }
        try await admin.enableConfirms()
        try await publishAll(admin, count: count, window: count, routingKey: queue) { index in
            (Array("\(index)".utf8), AMQPProperties(deliveryMode: 2, messageID: "\(index)"))
        }
        let consuming = try await connection.openChannel()
        var inHand: [AMQPDelivery] = []
        for try await delivery in try await consuming.consume(queue: queue, prefetch: UInt16(count)) {
            inHand.append(delivery)
            if inHand.count == count { break }
        }
        return (admin, consuming, inHand)
    }
}
