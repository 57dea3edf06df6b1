/// A message delivered to a consumer (or taken with `get`), to be acknowledged on its channel.
public struct AMQPDelivery: Sendable {
    public let body: [UInt8]
    public let properties: AMQPProperties
    public let exchange: String
    public let routingKey: String
    /// The broker may have delivered this message before (it was not acknowledged then).
    public let redelivered: Bool
    public let deliveryTag: UInt64
    public let consumerTag: String
    /// The channel it arrived on; acknowledgements go there.
    public let channel: AMQPChannel

    /// Acknowledges this delivery (and, with `multiple`, every earlier one on the channel).
    /// Acknowledging on a channel that has closed throws `channelClosed`: the broker has already
    /// put the message back.
    public func ack(multiple: Bool = false) async throws {
        try await channel.ack(deliveryTag, multiple: multiple)
    }

    /// Negatively acknowledges; without `requeue` the message is dead-lettered (or dropped).
    public func nack(multiple: Bool = false, requeue: Bool) async throws {
        try await channel.nack(deliveryTag, multiple: multiple, requeue: requeue)
    }

    /// Rejects this delivery; without `requeue` the message is dead-lettered (or dropped).
    public func reject(requeue: Bool) async throws {
        try await channel.reject(deliveryTag, requeue: requeue)
    }
}

/// The deliveries of one consumer, in order. Ends with an error when the broker cancels the
/// consumer (`consumerCancelled`) or the channel or connection closes; ends normally after `cancel`.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    /// The consumer tag the broker assigned.
    public let tag: String
    let channel: AMQPChannel
    let stream: AsyncThrowingStream<AMQPDelivery, any Error>

    public func makeAsyncIterator() -> AsyncThrowingStream<AMQPDelivery, any Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }
}
