import AMQP
import Foundation
import Testing
import TestSupport

/// The AMQP module against the real broker deploy/test.sh starts.
@Suite struct AMQPBrokerTests {
    @Test func everyPropertyAndHeaderTypeRoundTrips() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true, autoDelete: true).name

            let headers: AMQPTable = [
                "bool": .bool(true), "int8": .int8(-8), "uint8": .uint8(200), "int16": .int16(-1600),
                "uint16": .uint16(60000), "int32": .int32(-320_000), "uint32": .uint32(4_000_000_000),
                "int64": .int64(-64_000_000_000), "float": .float(1.5), "double": .double(-2.25),
                "decimal": .decimal(places: 2, value: 12345), "string": .string("héllo ✓"),
                "bytes": .bytes([0, 1, 2, 255]), "timestamp": .timestamp(1_764_370_000),
                "table": .table(["nested": .table(["deep": .int32(7)]), "s": .string("x")]),
                "array": .array([.int32(1), .string("two"), .table(["three": .bool(false)]), .array([])]),
                "void": .void,
            ]
            let properties = AMQPProperties(
                contentType: "application/json", contentEncoding: "identity", headers: headers,
                deliveryMode: AMQPProperties.persistent, priority: 5, correlationID: "corr-1",
                replyTo: "reply.queue", expiration: "60000", messageID: "msg-1",
                timestamp: 1_764_370_001, type: "test.type", userID: "guest", appID: "tests",
                clusterID: "cluster")
            let body = Array("{\"hello\": \"wörld\"}".utf8) + [0, 0xFF]
            try await channel.publish(body, routingKey: queue, properties: properties)

            let delivery = try #require(
                try await waitForMessage(channel, queue: queue), "the published message never arrived")
            #expect(delivery.body == body)
            #expect(delivery.properties == properties)
            #expect(delivery.routingKey == queue)
            #expect(delivery.exchange == "")
            #expect(!delivery.redelivered)
            delivery.ack()
        }
    }

    /// A publish's C structures are carved from one block per connection, reused by the next
    /// publish; what does not fit is allocated on its own. Headers several times that block, and
    /// small publishes before and after them, arrive as they were sent.
    @Test func headersLargerThanTheConnectionsScratchBlockRoundTrip() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true, autoDelete: true).name

            var large: AMQPTable = [:]
            for index in 0..<200 {
                large["header-\(index)"] = .string(String(repeating: Character(UnicodeScalar(65 + index % 26)!), count: 60))
            }
            let sent = [
                AMQPProperties(headers: ["small": .string("before")], messageID: "before"),
                AMQPProperties(contentType: "text/plain", headers: large, messageID: "large", type: "large.type"),
                AMQPProperties(headers: ["small": .string("after"), "n": .int32(3)], messageID: "after"),
            ]
            for properties in sent {
                try await channel.publish(Array((properties.messageID ?? "").utf8), routingKey: queue, properties: properties)
            }
            for properties in sent {
                let delivery = try #require(
                    try await waitForMessage(channel, queue: queue), "a published message never arrived")
                #expect(delivery.properties == properties)
                #expect(delivery.body == Array((properties.messageID ?? "").utf8))
                delivery.ack()
            }
        }
    }

    /// With frames of 4 KiB, bodies of every size around a frame's edges, published at the same
    /// moment with properties and headers, arrive whole: the consumer puts a body together from
    /// as many frames as it takes.
    @Test func publishesSentTogetherArriveWholeAtEverySizeAroundTheFramesEdges() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect(frameMax: 4096)
            #expect(try await connection.frameMax == 4096)
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = try await channel.declareQueue("", exclusive: true, autoDelete: true).name

            // A frame carries 4,088 bytes of body.
            let sizes = [0, 1, 4087, 4088, 4089, 8176, 8177, 30_000, 65_536, 65_537, 200_000]
            func body(_ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) } }
            func properties(_ size: Int) -> AMQPProperties {
                AMQPProperties(
                    contentType: "application/octet-stream", headers: ["size": .int64(Int64(size)), "note": .string("ä✓")],
                    deliveryMode: AMQPProperties.persistent, messageID: "\(size)", timestamp: 1_764_370_001)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for size in sizes {
                    group.addTask { try await channel.publish(body(size), routingKey: queue, properties: properties(size)) }
                }
                try await group.waitForAll()
            }

            var arrived: [Int] = []
            for _ in sizes {
                let delivery = try #require(try await waitForMessage(channel, queue: queue), "a published message never arrived")
                let size = try #require(delivery.properties.messageID.flatMap { Int($0) })
                #expect(delivery.properties == properties(size))
                #expect(delivery.body.count == size)
                #expect(delivery.body == body(size), "the body of \(size) bytes arrived changed")
                arrived.append(size)
                delivery.ack()
            }
            #expect(arrived.sorted() == sizes)
            #expect(connection.closeReason == nil)
        }
    }

    @Test func tenThousandMessagesArriveOnceEach() async throws {
        try await withCleanup { cleanup in
            let publisher = try await cleanup.connect()
            let consumerConnection = try await cleanup.connect()
            let channel = try await publisher.openChannel()
            let queue = TestBroker.uniqueName("ten-thousand")
            try await channel.declareQueue(queue, durable: true)
            cleanup.add { _ = try? await channel.deleteQueue(queue) }
            try await channel.enableConfirms()

            let count = 10_000
            try await publishAll(channel, count: count, window: 500, routingKey: queue) { index in
                (Array("message \(index)".utf8), AMQPProperties(deliveryMode: 2, messageID: "\(index)"))
            }
            let declared = try await channel.declareQueue(queue, passive: true)
            #expect(declared.messageCount == UInt32(count))

            let consuming = try await consumerConnection.openChannel()
            var seen = Set<String>()
            var duplicates = 0
            for try await delivery in try await consuming.consume(queue: queue, prefetch: 300) {
                let id = try #require(delivery.properties.messageID)
                if !seen.insert(id).inserted { duplicates += 1 }
                #expect(delivery.body == Array("message \(id)".utf8))
                if seen.count % 50 == 0 || seen.count == count { delivery.ack(multiple: true) }
                if seen.count == count { break }
            }
            #expect(seen.count == count)
            #expect(duplicates == 0)
            #expect(
                try await eventually { try await channel.declareQueue(queue, passive: true).messageCount == 0 },
                "acknowledged messages stayed in the queue")
        }
    }

    @Test func nackAndRejectDeadLetter() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName("work")
            let dead = queue + ".dead"
            try await channel.declareQueue(dead, durable: false, autoDelete: false)
            try await channel.declareQueue(
                queue, durable: false,
                arguments: ["x-dead-letter-exchange": .string(""), "x-dead-letter-routing-key": .string(dead)])
            cleanup.add { _ = try? await channel.deleteQueue(queue); _ = try? await channel.deleteQueue(dead) }
            try await channel.enableConfirms()
            for name in ["nacked", "rejected", "requeued"] {
                try await channel.publish(Array(name.utf8), routingKey: queue, properties: .init(messageID: name))
            }

            var requeuedOnce = false
            for try await delivery in try await channel.consume(queue: queue, prefetch: 10) {
                switch delivery.properties.messageID {
                case "nacked": delivery.nack(requeue: false)
                case "rejected": delivery.reject(requeue: false)
                case "requeued" where !requeuedOnce:
                    requeuedOnce = true
                    delivery.nack(requeue: true)
                default:
                    #expect(delivery.redelivered, "a requeued message comes back marked redelivered")
                    delivery.ack()
                }
                if requeuedOnce, delivery.redelivered { break }
            }

            var deadLettered: [String: AMQPDelivery] = [:]
            #expect(
                try await eventually {
                    if let message = try await channel.get(queue: dead) {
                        deadLettered[message.properties.messageID ?? ""] = message
                        message.ack()
                    }
                    return deadLettered.count == 2
                })
            #expect(Set(deadLettered.keys) == ["nacked", "rejected"])
            let death = deadLettered["nacked"]?.properties.headers?["x-death"]
            guard case .array(let deaths)? = death, case .table(let first)? = deaths.first else {
                Issue.record("dead-lettered message has no x-death header: \(String(describing: death))")
                return
            }
            #expect(first["queue"]?.stringValue == queue)
            #expect(first["reason"]?.stringValue == "rejected")
            #expect(first["count"]?.intValue == 1)
        }
    }

    @Test func mismatchedRedeclareFailsWith406AndTheConnectionLivesOn() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName("mismatch")
            try await channel.declareQueue(queue, durable: true, arguments: ["x-message-ttl": .int64(60_000)])
            cleanup.add { _ = try? await connection.openChannel().deleteQueue(queue) }

            let error = await #expect(throws: AMQPError.self) {
                try await channel.declareQueue(queue, durable: true, arguments: ["x-message-ttl": .int64(1_000)])
            }
            #expect(error?.code == .channelClosed)
            #expect(error?.replyCode == AMQPError.ReplyCode.preconditionFailed)
            #expect(error?.replyText.contains("x-message-ttl") == true)
            await #expect(throws: AMQPError.self, "the closed channel stays closed") {
                try await channel.declareQueue(queue, passive: true)
            }

            let fresh = try await connection.openChannel()
            let existing = try await fresh.declareQueue(queue, passive: true)
            #expect(existing.name == queue)
            #expect(connection.closeReason == nil)
        }
    }

    @Test func passiveDeclareOfAMissingQueueIs404() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let error = await #expect(throws: AMQPError.self) {
                try await channel.declareQueue(TestBroker.uniqueName("missing"), passive: true)
            }
            #expect(error?.replyCode == AMQPError.ReplyCode.notFound)
        }
    }

    @Test func mandatoryPublishToAnUnroutableKeyIsReturned() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let exchange = TestBroker.uniqueName("routes")
            try await channel.declareExchange(exchange, type: "direct", durable: false, autoDelete: true)
            let queue = try await channel.declareQueue("", exclusive: true).name
            try await channel.bindQueue(queue, exchange: exchange, routingKey: "known")
            try await channel.enableConfirms()

            let error = await #expect(throws: AMQPError.self) {
                try await channel.publish(
                    [1], exchange: exchange, routingKey: "nobody", mandatory: true,
                    properties: .init(messageID: "lost"))
            }
            #expect(error?.code == .returned)
            #expect(error?.replyCode == AMQPError.ReplyCode.noRoute)
            // Routable mandatory publishes, before and after, are confirmed normally.
            try await channel.publish([2], exchange: exchange, routingKey: "known", mandatory: true)
            try await channel.publish([3], exchange: exchange, routingKey: "nobody", mandatory: false)
            #expect(try await channel.declareQueue(queue, passive: true).messageCount == 1)
        }
    }

    @Test func brokerCancelEndsTheConsumerWithAnError() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName("cancelled")
            try await channel.declareQueue(queue, durable: false)
            let consumer = try await channel.consume(queue: queue, prefetch: 1)
            let other = try await connection.openChannel()
            try await other.deleteQueue(queue)
            await #expect(throws: AMQPError.self) {
                for try await _ in consumer {}
            }
            do {
                for try await _ in consumer {}
            } catch let error as AMQPError {
                #expect(error.code == .consumerCancelled)
            }
        }
    }

    @Test func streamConsumersTakeAnOffset() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let stream = TestBroker.uniqueName("stream")
            try await channel.declareQueue(stream, durable: true, arguments: ["x-queue-type": .string("stream")])
            cleanup.add { _ = try? await channel.deleteQueue(stream) }
            try await channel.enableConfirms()
            for index in 0..<5 {
                try await channel.publish(Array("\(index)".utf8), routingKey: stream)
            }
            let reader = try await connection.openChannel()
            var bodies: [String] = []
            for try await delivery in try await reader.consume(
                queue: stream, prefetch: 10, arguments: ["x-stream-offset": .int64(3)])
            {
                bodies.append(String(decoding: delivery.body, as: UTF8.self))
                delivery.ack()
                if bodies.count == 2 { break }
            }
            #expect(bodies == ["3", "4"])
        }
    }

    @Test func wrongPasswordIsRefused() async throws {
        var configuration = try AMQPConnection.Configuration(url: TestBroker.url)
        configuration.password = "wrong"
        let error = await #expect(throws: AMQPError.self) {
            try await AMQPConnection.connect(configuration)
        }
        #expect(error?.code == .loginRefused)
    }

    @Test func nothingListeningFailsPromptly() async throws {
        var configuration = try AMQPConnection.Configuration(url: "amqp://127.0.0.1:1")
        configuration.connectTimeout = .seconds(2)
        let error = await #expect(throws: AMQPError.self) {
            try await AMQPConnection.connect(configuration)
        }
        #expect(error?.code == .connectionFailed)
    }

    @Test func idleConnectionOutlivesThreeHeartbeats() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect(heartbeat: 1)
            #expect(try await connection.heartbeat == .seconds(1))
            let channel = try await connection.openChannel()
            try await Task.sleep(for: .seconds(4))
            #expect(connection.closeReason == nil)
            let queue = try await channel.declareQueue("", exclusive: true)
            #expect(!queue.name.isEmpty)
        }
    }

    @Test func aBodyExactlyAtTheConsumersLimitIsDeliveredWholeOneByteMoreIsDropped() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true, autoDelete: true).name
            try await channel.enableConfirms()
            let limit = 200_000  // more than one frame
            let atLimit = (0..<limit).map { UInt8(truncatingIfNeeded: $0) }
            try await channel.publish(atLimit, routingKey: queue, properties: .init(messageID: "at"))
            try await channel.publish(atLimit + [0], routingKey: queue, properties: .init(messageID: "over"))
            try await channel.publish([], routingKey: queue, properties: .init(messageID: "empty"))

            var deliveries: [AMQPDelivery] = []
            for try await delivery in try await channel.consume(queue: queue, prefetch: 10, maxBodyBytes: limit) {
                deliveries.append(delivery)
                if deliveries.count == 3 { break }
            }
            try #require(deliveries.count == 3)
            #expect(deliveries[0].body == atLimit && !deliveries[0].isBodyDiscarded)
            #expect(deliveries[0].bodySize == UInt64(limit))
            #expect(deliveries[1].body.isEmpty && deliveries[1].isBodyDiscarded)
            #expect(deliveries[1].bodySize == UInt64(limit + 1))
            #expect(deliveries[1].properties.messageID == "over")
            #expect(deliveries[2].body.isEmpty && !deliveries[2].isBodyDiscarded && deliveries[2].bodySize == 0)
            deliveries[2].ack(multiple: true)
            #expect(connection.closeReason == nil)
        }
    }

    @Test func aConnectionsThreadCarriesItsNameAndEndsWithTheConnection() async throws {
        let word = String(UUID().uuidString.prefix(8)).lowercased()
        var configuration = try AMQPConnection.Configuration(url: TestBroker.url)
        configuration.threadName = "amqp " + word
        let connection = try await AMQPConnection.connect(configuration)
        // The owner thread names itself before the connection opens, its watchdog once it has.
        let names = try Self.threadNames()
        #expect(names.contains("amqp " + word), "threads: \(names)")
        #expect(try await eventually { try Self.threadNames().contains("amqp watchdog") }, "no thread named amqp watchdog")
        await connection.close()
        #expect(try await eventually { try !Self.threadNames().contains("amqp " + word) }, "the thread outlived its connection")
    }

    /// The names of this process's threads, as `top -H` and `ps -L` show them.
    static func threadNames() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").compactMap {
            try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    @Test func closingFailsLaterCalls() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        await connection.close()
        #expect(connection.closeReason == .closedByApplication)
        await #expect(throws: AMQPError.self) { try await channel.declareQueue("", exclusive: true) }
    }
}

/// Publishes `count` messages with at most `window` unconfirmed at once.
func publishAll(
    _ channel: AMQPChannel, count: Int, window: Int, routingKey: String? = nil,
    message: @escaping @Sendable (Int) -> ([UInt8], AMQPProperties)
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
            let index = next
            next += 1
            let (body, properties) = message(index)
            group.addTask {
                try await channel.publish(body, routingKey: routingKey ?? "", properties: properties)
            }
        }
        while next < min(window, count) { add() }
        while try await group.next() != nil {
            if next < count { add() }
        }
    }
}

func waitForMessage(_ channel: AMQPChannel, queue: String) async throws -> AMQPDelivery? {
    var message: AMQPDelivery?
    _ = try await eventually {
        message = try await channel.get(queue: queue)
        return message != nil
    }
    return message
}
