import AMQP
import Testing
import TestSupport

/// librabbitmq 0.11 decodes nested field tables and arrays recursively with no depth limit (fixed
/// upstream in 0.14): a header nested as deep as a frame allows must neither crash the consumer
/// nor reach Swift unbounded.
@Suite struct AMQPDeepHeadersTests {
    @Test(arguments: ["A", "F"] as [Character])
    func aHeaderNestedAsDeepAsAFrameAllowsIsTruncatedAndTheConsumerLivesOn(kind: Character) async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName("deep-\(kind)")
            try await channel.declareQueue(queue, durable: false)
            cleanup.add { _ = try? await channel.deleteQueue(queue) }
            let consumer = try await channel.consume(queue: queue, prefetch: 10)

            let publisher = try RawAMQPPublisher(url: TestBroker.url)
            let levels = RawAMQPPublisher.deepestNesting(kind: kind, frameMax: publisher.frameMax)
            #expect(levels > 20_000)
            try publisher.publish(
                routingKey: queue, headers: RawAMQPPublisher.deeplyNestedHeaders(kind: kind, levels: levels),
                body: Array("deep".utf8))
            try publisher.publish(routingKey: queue, headers: [0, 0, 0, 0], body: Array("after".utf8))
            try publisher.close()

            var deliveries: [AMQPDelivery] = []
            for try await delivery in consumer {
                deliveries.append(delivery)
                delivery.ack()
                if deliveries.count == 2 { break }
            }
            try #require(deliveries.count == 2)
            #expect(deliveries[0].body == Array("deep".utf8))
            #expect(deliveries[1].body == Array("after".utf8))
            #expect(connection.closeReason == nil)

            // Levels past AMQPTable.maximumDepth (the headers table itself is level 1) become .void.
            var value = try #require(deliveries[0].properties.headers?["deep"])
            var nested = 0
            while true {
                switch value {
                case .array(let values) where kind == "A":
                    nested += 1
                    value = try #require(values.first)
                case .table(let table) where kind == "F":
                    nested += 1
                    value = try #require(table[""])
                default:
                    #expect(value == .void, "\(nested) levels then \(value)")
                    #expect(nested == AMQPTable.maximumDepth - 1)
                    return
                }
            }
        }
    }
}
