import CRabbitMQ

/// An AMQP channel: declarations, publishing with confirms, consuming.
///
/// A channel the broker closes (e.g. 406 PRECONDITION_FAILED on a mismatched redeclare) answers
/// every later call with `AMQPError.Code.channelClosed`; the connection stays usable, so open a new
/// channel.
public struct AMQPChannel: Sendable, Hashable {
    let loop: ConnectionLoop
    let number: UInt16
    let id: UInt64

    init(loop: ConnectionLoop, number: UInt16, id: UInt64) {
        self.loop = loop
        self.number = number
        self.id = id
    }

    public static func == (lhs: AMQPChannel, rhs: AMQPChannel) -> Bool {
        lhs.loop === rhs.loop && lhs.id == rhs.id
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(id) }

    /// A declared queue.
    public struct Queue: Sendable, Hashable {
        public var name: String
        public var messageCount: UInt32
        public var consumerCount: UInt32
    }

    /// Declares an exchange (or checks that it exists, with `passive`).
    public func declareExchange(
        _ name: String, type: String, durable: Bool = true, autoDelete: Bool = false,
        internal isInternal: Bool = false, passive: Bool = false, arguments: AMQPTable = [:]
    ) async throws {
        try await loop.perform { loop throws(AMQPError) in
            _ = try loop.rpc(self, "declaring exchange \(name)") { state, channel in
                amqp_exchange_declare(
                    state, channel, loop.arena.bytes(name), loop.arena.bytes(type), passive ? 1 : 0,
                    durable ? 1 : 0, autoDelete ? 1 : 0, isInternal ? 1 : 0, arguments.cTable(in: loop.arena))
            }
        }
    }

    /// Declares a queue (or checks that it exists, with `passive`). Arguments carry dead-lettering,
    /// TTLs and `x-queue-type` (`classic`, `quorum`, `stream`). An empty name asks the broker for one.
    @discardableResult
    public func declareQueue(
        _ name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
        passive: Bool = false, arguments: AMQPTable = [:]
    ) async throws -> Queue {
        try await loop.perform { loop throws(AMQPError) in
            let queue = try loop.rpc(self, "declaring queue \(name)") { state, channel -> Queue? in
                guard
                    let ok = amqp_queue_declare(
                        state, channel, loop.arena.bytes(name), passive ? 1 : 0, durable ? 1 : 0,
                        exclusive ? 1 : 0, autoDelete ? 1 : 0, arguments.cTable(in: loop.arena))
                else { return nil }
                return Queue(
                    name: String(amqpBytes: ok.pointee.queue), messageCount: ok.pointee.message_count,
                    consumerCount: ok.pointee.consumer_count)
            }
            guard let queue else { throw AMQPError(.protocolError, "no queue.declare-ok for \(name)") }
            return queue
        }
    }

    /// Binds a queue to an exchange.
    public func bindQueue(
        _ queue: String, exchange: String, routingKey: String, arguments: AMQPTable = [:]
    ) async throws {
        try await loop.perform { loop throws(AMQPError) in
            _ = try loop.rpc(self, "binding \(queue) to \(exchange)") { state, channel in
                amqp_queue_bind(
                    state, channel, loop.arena.bytes(queue), loop.arena.bytes(exchange),
                    loop.arena.bytes(routingKey), arguments.cTable(in: loop.arena))
            }
        }
    }

    /// Removes a binding; removing one that does not exist succeeds.
    public func unbindQueue(
        _ queue: String, exchange: String, routingKey: String, arguments: AMQPTable = [:]
    ) async throws {
        try await loop.perform { loop throws(AMQPError) in
            _ = try loop.rpc(self, "unbinding \(queue) from \(exchange)") { state, channel in
                amqp_queue_unbind(
                    state, channel, loop.arena.bytes(queue), loop.arena.bytes(exchange),
                    loop.arena.bytes(routingKey), arguments.cTable(in: loop.arena))
            }
        }
    }

    /// Deletes a queue; returns how many messages it held.
    @discardableResult
    public func deleteQueue(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws -> UInt32 {
        try await loop.perform { loop throws(AMQPError) in
            try loop.rpc(self, "deleting queue \(name)") { state, channel in
                amqp_queue_delete(state, channel, loop.arena.bytes(name), ifUnused ? 1 : 0, ifEmpty ? 1 : 0)?
                    .pointee.message_count ?? 0
            }
        }
    }

    /// Removes every ready message from a queue; returns how many.
    @discardableResult
    public func purgeQueue(_ name: String) async throws -> UInt32 {
        try await loop.perform { loop throws(AMQPError) in
            try loop.rpc(self, "purging queue \(name)") { state, channel in
                amqp_queue_purge(state, channel, loop.arena.bytes(name))?.pointee.message_count ?? 0
            }
        }
    }

    /// Deletes an exchange.
    public func deleteExchange(_ name: String) async throws {
        try await loop.perform { loop throws(AMQPError) in
            _ = try loop.rpc(self, "deleting exchange \(name)") { state, channel in
                amqp_exchange_delete(state, channel, loop.arena.bytes(name), 0)
            }
        }
    }

    /// Puts the channel in confirm mode: from then on `publish` returns only once the broker has
    /// taken responsibility for the message.
    public func enableConfirms() async throws {
        try await loop.perform { loop throws(AMQPError) in
            _ = try loop.rpc(self, "enabling publisher confirms") { state, channel in
                amqp_confirm_select(state, channel)
            }
            try loop.channel(self).confirmMode = true
        }
    }

    /// Publishes a message.
    ///
    /// In confirm mode this returns once the broker confirms the message and throws
    /// `AMQPError.Code.nacked` if the broker refuses it, `.returned` (reply code 312) if it was
    /// `mandatory` and could not be routed, or a connection or channel error if the channel went
    /// away first (then the message may or may not have arrived: publish it again). Any number of
    /// publishes may be in flight at once; the broker settles them in batches. While the broker
    /// blocks publishing (resource alarm), publishes wait.
    ///
    /// A message that cannot be encoded (see `AMQPProperties.validateForPublish`) is refused with
    /// `.invalidArgument` before anything is written; the channel and connection stay usable.
    ///
    /// Cancelling the calling task makes this throw `CancellationError` at once. A publish not
    /// yet written (waiting while the broker blocks publishing) is then never written; one
    /// already written may still reach the queue, and its confirm is consumed silently.
    public func publish(
        _ body: [UInt8], exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) async throws {
        let ticket = PublishTicket(id: loop.makePublishID())
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                guard ticket.suspend(continuation) else { return }
                loop.submit(
                    ConnectionLoop.Command(
                        publishID: ticket.id,
                        run: { loop in
                            loop.publish(
                                body, on: self, exchange: exchange, routingKey: routingKey,
                                mandatory: mandatory, properties: properties, ticket: ticket)
                        },
                        fail: { ticket.resume(throwing: $0) }))
            }
        } onCancel: {
            if ticket.cancel() { loop.dropDeferredPublish(ticket.id) }
        }
    }

    /// Starts a consumer with its own prefetch (unacknowledged deliveries held at once); deliveries
    /// need manual acknowledgement. Consumer arguments such as `x-stream-offset` go in `arguments`.
    /// The returned sequence ends with an error if the broker cancels the consumer or the channel or
    /// connection closes.
    ///
    /// A delivery whose body is declared larger than `maxBodyBytes` arrives with an empty `body`
    /// and `isBodyDiscarded` set (its `bodySize` says how large it was): the body is read from the
    /// socket and dropped frame by frame, never held in memory. Acknowledge it as any other.
    public func consume(
        queue: String, prefetch: UInt16, exclusive: Bool = false, arguments: AMQPTable = [:],
        maxBodyBytes: Int? = nil
    ) async throws -> AMQPConsumer {
        try await loop.perform { loop throws(AMQPError) in
            try loop.consume(
                self, queue: queue, prefetch: prefetch, exclusive: exclusive, arguments: arguments,
                maxBodyBytes: maxBodyBytes)
        }
    }

    /// Stops a consumer; deliveries not yet acknowledged go back to the queue when the channel closes.
    public func cancel(_ consumer: AMQPConsumer) async throws {
        try await loop.perform { loop throws(AMQPError) in try loop.cancelConsumer(self, tag: consumer.tag) }
    }

    /// Takes one message from a queue (`basic.get`) for manual acknowledgement; `nil` when empty.
    public func get(queue: String) async throws -> AMQPDelivery? {
        try await loop.perform { loop throws(AMQPError) in try loop.get(self, queue: queue) }
    }

    /// Closes the channel.
    public func close() async throws {
        try await loop.perform { loop throws(AMQPError) in try loop.closeChannel(self) }
    }

    /// Sends an ack, nack or reject without waiting: the broker never answers them, and one on a
    /// channel that has closed meanwhile is moot (the broker has put the message back already).
    func settle(_ tag: UInt64, _ settlement: Settlement) {
        loop.submit(
            ConnectionLoop.Command(
                isAck: settlement.isPlainAck,
                run: { loop in loop.settleDelivery(self, tag, settlement) },
                fail: { _ in }))
    }
}
