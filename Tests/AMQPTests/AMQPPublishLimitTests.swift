import AMQP
import Testing

/// What cannot be encoded is refused before a byte is written, and the channel lives on.
@Suite struct AMQPPublishLimitTests {
    /// A message whose only property is `headers = ["pad": .string(n bytes)]` has a content header
    /// frame payload of 2 + 2 + 8 + 2 (class, weight, body size, flags) + 4 (table size)
    /// + 1 + 3 ("pad") + 1 + 4 (type "S", length) + n = 27 + n bytes, and a frame carries at most
    /// frame_max - 8 (type, channel, size, end marker).
    static func paddingFillingTheHeaderFrame(frameMax: Int) -> Int { frameMax - 8 - 27 }

    static func padded(_ count: Int) -> AMQPProperties {
        AMQPProperties(headers: ["pad": .string(String(repeating: "x", count: count))])
    }

    @Test func aHeaderFrameExactlyAtFrameMaxIsPublishedAndConsumedIntactOneByteMoreIsRefused() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let frameMax = try await connection.frameMax
            #expect(frameMax == 131_072)
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = try await channel.declareQueue("", exclusive: true, autoDelete: true).name
            let fitting = Self.paddingFillingTheHeaderFrame(frameMax: frameMax)

            let tooBig = await #expect(throws: AMQPError.self) {
                try await channel.publish([1], routingKey: queue, properties: Self.padded(fitting + 1))
            }
            #expect(tooBig?.code == .invalidArgument)
            #expect(tooBig?.replyText.contains("\(frameMax - 7)") == true, "\(String(describing: tooBig))")

            try await channel.publish([2], routingKey: queue, properties: Self.padded(fitting))
            try await channel.publish([3], routingKey: queue)
            let atLimit = try #require(try await waitForMessage(channel, queue: queue))
            #expect(atLimit.body == [2])
            #expect(atLimit.properties == Self.padded(fitting))
            let after = try #require(try await waitForMessage(channel, queue: queue))
            #expect(after.body == [3])
            after.ack(multiple: true)
            #expect(connection.closeReason == nil)
        }
    }

    enum ShortField: String, CaseIterable, Sendable {
        case routingKey, messageID, correlationID, exchange
    }

    @Test(arguments: ShortField.allCases)
    func aShortStringOver255BytesIsRefusedAndTheChannelStaysUsable(field: ShortField) async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = try await channel.declareQueue("", exclusive: true, autoDelete: true).name

            func publish(_ text: String) async throws {
                switch field {
                case .routingKey:
                    try await channel.publish([1], routingKey: text)  // unroutable, still confirmed
                case .messageID:
                    try await channel.publish([1], routingKey: queue, properties: .init(messageID: text))
                case .correlationID:
                    try await channel.publish([1], routingKey: queue, properties: .init(correlationID: text))
                case .exchange:
                    // The default exchange has no name: a 255-byte one must be declared.
                    if text.utf8.count <= 255 { try await channel.declareExchange(text, type: "fanout", durable: false, autoDelete: true) }
                    try await channel.publish([1], exchange: text, routingKey: queue)
                }
            }
            // Two-byte characters: the limit counts bytes of UTF-8, not characters.
            let error = await #expect(throws: AMQPError.self) { try await publish(String(repeating: "é", count: 128)) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.replyText.contains("256") == true, "\(String(describing: error))")

            try await publish(String(repeating: "k", count: 255))
            try await channel.publish([2], routingKey: queue)
            #expect(connection.closeReason == nil)
            if field == .exchange { try await channel.deleteExchange(String(repeating: "k", count: 255)) }
        }
    }

    @Test func aTableKeyOver255BytesOrNestingPastTheLimitIsRefused() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = try await channel.declareQueue("", exclusive: true, autoDelete: true).name

            let longKey = await #expect(throws: AMQPError.self) {
                try await channel.publish(
                    [1], routingKey: queue,
                    properties: .init(headers: ["outer": .table([String(repeating: "k", count: 256): .bool(true)])]))
            }
            #expect(longKey?.code == .invalidArgument)
            #expect(longKey?.replyText.hasPrefix("headers.outer.kkk") == true, "\(String(describing: longKey))")

            let deepest = AMQPProperties(headers: ["deep": Self.nestedArrays(AMQPTable.maximumDepth - 1)])
            let tooDeep = await #expect(throws: AMQPError.self) {
                try await channel.publish(
                    [1], routingKey: queue, properties: .init(headers: ["deep": Self.nestedArrays(AMQPTable.maximumDepth)]))
            }
            #expect(tooDeep?.code == .invalidArgument)

            try await channel.publish([2], routingKey: queue, properties: deepest)
            let delivery = try #require(try await waitForMessage(channel, queue: queue))
            #expect(delivery.properties == deepest, "the deepest table allowed did not come back intact")
            delivery.ack()
            #expect(connection.closeReason == nil)
        }
    }

    @Test func validationWithoutABrokerAgreesWithTheFrameArithmetic() throws {
        let fitting = Self.paddingFillingTheHeaderFrame(frameMax: 4096)
        try Self.padded(fitting).validateForPublish(frameMax: 4096)
        #expect(throws: AMQPError.self) { try Self.padded(fitting + 1).validateForPublish(frameMax: 4096) }
        // Every short-string property counts: 1 length byte + its bytes, 2 more for the flags.
        var full = AMQPProperties(messageID: String(repeating: "m", count: 255))
        try full.validateForPublish(frameMax: 8 + 14 + 256)
        #expect(throws: AMQPError.self) { try full.validateForPublish(frameMax: 8 + 14 + 255) }
        full.timestamp = 1
        #expect(throws: AMQPError.self) { try full.validateForPublish(frameMax: 8 + 14 + 256 + 7) }
        try full.validateForPublish(frameMax: 8 + 14 + 256 + 8)
    }

    /// `levels` arrays nested in each other, the innermost empty.
    static func nestedArrays(_ levels: Int) -> AMQPFieldValue {
        var value = AMQPFieldValue.array([])
        for _ in 1..<levels { value = .array([value]) }
        return value
    }
}
