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
            let connection = try await cleanup.connect()
            let admin = try await connection.openChannel()
            let queue = TestBroker.uniqueName("gathered-acks")
            try await admin.declareQueue(queue, durable: true)
            cleanup.add { _ = try? await admin.deleteQueue(queue) }
            try await admin.enableConfirms()
            let count = 40
            try await publishAll(admin, count: count, window: count, routingKey: queue) { index in
                (Array("\(index)".utf8), AMQPProperties(deliveryMode: 2, messageID: "\(index)"))
            }

            let consuming = try await connection.openChannel()
            var inHand: [AMQPDelivery] = []
            for try await delivery in try await consuming.consume(queue: queue, prefetch: UInt16(count)) {
                inHand.append(delivery)
                if inHand.count == count { break }
            }
            let keptBack: Set = ["7", "30"]
            await withTaskGroup(of: Void.self) { group in
                for delivery in inHand.shuffled() where !keptBack.contains(delivery.properties.messageID ?? "") {
                    group.addTask { delivery.ack() }
                }
            }
            try await consuming.close()

            var returned: [String] = []
            while let message = try await admin.get(queue: queue) {
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
            let connection = try await cleanup.connect()
            let admin = try await connection.openChannel()
            let queue = TestBroker.uniqueName("acks-kept-back")
            try await admin.declareQueue(queue, durable: true)
            cleanup.add { _ = try? await admin.deleteQueue(queue) }
            try await admin.enableConfirms()
            try await publishAll(admin, count: 10, window: 10, routingKey: queue) { index in
                (Array("\(index)".utf8), AMQPProperties(deliveryMode: 2))
            }
            let consuming = try await connection.openChannel()
            var inHand: [AMQPDelivery] = []
            for try await delivery in try await consuming.consume(queue: queue, prefetch: 10) {
                inHand.append(delivery)
                if inHand.count == 10 { break }
            }
            for delivery in inHand.dropFirst() { delivery.ack() }

            func unacknowledged() throws -> Int? {
                let rows = try TestBroker.control("ctl", "-q", "list_queues", "name", "messages_unacknowledged", "--no-table-headers")
                return rows.split(separator: "\n").lazy.map { $0.split(whereSeparator: \.isWhitespace) }
                    .first { $0.first.map(String.init) == queue }.flatMap { $0.last.flatMap { Int($0) } }
            }
            var seen: Int?
            #expect(
                await eventually(timeout: .seconds(10)) {
                    seen = try? unacknowledged()
                    return seen == 1
                }, "unacknowledged at the broker: \(String(describing: seen))")
            inHand[0].ack()
        }
    }
}
