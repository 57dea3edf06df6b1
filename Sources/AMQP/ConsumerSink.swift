/// Where a consumer's deliveries go, on the connection's thread.
///
/// Deliveries read in one pass over the socket are handed to the consumer's task as one batch:
/// waking a task per message would cost more than everything else the wrapper does.
final class ConsumerSink {
    typealias Batches = AsyncThrowingStream<[AMQPDelivery], any Error>

    private let continuation: Batches.Continuation
    private var pending: [AMQPDelivery] = []
    /// Bodies declared larger are dropped unread (`AMQPDelivery.isBodyDiscarded`); nil: no limit.
    let maxBodyBytes: Int?
    /// Consuming a stream (started with an `x-stream-offset`): a stream refuses `basic.reject`.
    let isStream: Bool

    init(_ continuation: Batches.Continuation, maxBodyBytes: Int?, isStream: Bool) {
        self.continuation = continuation
        self.maxBodyBytes = maxBodyBytes
        self.isStream = isStream
    }

    /// Holds a delivery until `flush`; returns true when it is the first one held.
    func append(_ delivery: AMQPDelivery) -> Bool {
        pending.append(delivery)
        return pending.count == 1
    }

    func flush() {
        guard !pending.isEmpty else { return }
        continuation.yield(pending)
        pending.removeAll(keepingCapacity: true)
    }

    /// Hands over what is held, then ends the sequence (with `error`, if given).
    func finish(throwing error: AMQPError? = nil) {
        flush()
        continuation.finish(throwing: error)
    }
}
