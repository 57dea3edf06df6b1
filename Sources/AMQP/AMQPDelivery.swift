/// A message delivered to a consumer (or taken with `get`), to be acknowledged on its channel.
public struct AMQPDelivery: Sendable {
    /// The body; empty when `isBodyDiscarded`.
    public let body: [UInt8]
    /// The body's size as the broker declared it, whether or not the body was kept.
    public let bodySize: UInt64
    /// The body was larger than the consumer's `maxBodyBytes` and was dropped unread: `body` is
    /// empty. The delivery is still acknowledged (or rejected) as usual.
    public let isBodyDiscarded: Bool
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
    ///
    /// Acknowledgements are sent without waiting, as the protocol has no reply for them. Plain
    /// acks made at about the same moment travel together: the connection's thread sends them
    /// once it has run the commands at hand, as one ack with `multiple` when they are the channel's
    /// oldest unsettled deliveries, and always before any later command of the application other
    /// than a publish (a nack, a close…). One on a channel that has closed meanwhile is dropped:
    /// the broker has already put the message back for redelivery.
    public func ack(multiple: Bool = false) {
        channel.settle(deliveryTag, multiple ? .ackThrough : .ack)
    }

    /// Negatively acknowledges; without `requeue` the message is dead-lettered (or dropped).
    public func nack(multiple: Bool = false, requeue: Bool) {
        channel.settle(deliveryTag, .nack(multiple: multiple, requeue: requeue))
    }

    /// Rejects this delivery; without `requeue` the message is dead-lettered (or dropped).
    public func reject(requeue: Bool) {
        channel.settle(deliveryTag, .reject(requeue: requeue))
    }
}

/// How a delivery is settled.
enum Settlement: Sendable {
    /// A plain ack, which may be sent together with others.
    case ack
    /// An ack of the delivery and every earlier one on the channel.
    case ackThrough
    case nack(multiple: Bool, requeue: Bool)
    case reject(requeue: Bool)

    var isPlainAck: Bool {
        if case .ack = self { true } else { false }
    }
}

/// The deliveries of one consumer, in order. Ends with an error when the broker cancels the
/// consumer (`consumerCancelled`) or the channel or connection closes; ends normally after `cancel`.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    /// The consumer tag the broker assigned.
    public let tag: String
    let channel: AMQPChannel
    let batches: ConsumerSink.Batches

    public func makeAsyncIterator() -> Iterator {
        Iterator(batches: batches.makeAsyncIterator())
    }

    /// Yields deliveries one by one from the batches the connection's thread hands over.
    public struct Iterator: AsyncIteratorProtocol {
        var batches: ConsumerSink.Batches.AsyncIterator
        var batch: [AMQPDelivery] = []
        var index = 0

        public mutating func next() async throws -> AMQPDelivery? {
            if index == batch.count {
                guard let next = try await batches.next() else { return nil }
                batch = next
                index = 0
            }
            defer { index += 1 }
            return batch[index]
        }
    }
}
