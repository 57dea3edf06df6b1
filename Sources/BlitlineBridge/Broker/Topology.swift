import AMQP

/// The queues and exchange the bridge owns (README, "Topology"), all durable, declared at start-up
/// and after every reconnect.
package struct Topology: Sendable {
    /// The type of every queue the bridge declares but the outcomes stream (`QUEUE_TYPE`).
    enum QueueType: String, Sendable, CaseIterable {
        /// Replicated over a cluster's nodes; dead-lettering out of the delay queues is
        /// at-least-once. The default.
        case quorum
        /// The queues of earlier versions, on the node that declared them; dead-lettering is
        /// at-most-once (a node lost at the moment of expiry drops the message).
        case classic
    }

    /// On quorum queues the broker dead-letters a request delivered this many times (into
    /// `deadQueue`): a backstop for a request the bridge cannot even take (`MAX_REDELIVERIES`
    /// acts first, with an event).
    static let deliveryLimit = 20

    package let jobsQueue: String
    package let eventsExchange: String
    let jobTimeout: Duration
    /// From a job's deadline to deciding its timeout (`TIMEOUT_GRACE`).
    var timeoutGrace: Duration = .seconds(10)
    var queueType: QueueType = .quorum
    /// Every event's CloudEvents `source` (`EVENT_SOURCE`, resolved).
    var eventSource = JobEvent.defaultSource

    /// Steps of the submit retry backoff: a TTL queue each, dead-lettering back into the jobs
    /// queue. One TTL per queue, so that a long delay never holds a short one back.
    static let retryDelays: [Duration] = [.seconds(1), .seconds(5), .seconds(30), .seconds(120)]
    /// How long a job waits in `pollsWaitQueue` before its next poll.
    static let pollPause: Duration = .seconds(1)

    /// Requests that cannot succeed as they are, with header `x-bridge-error`.
    package var deadQueue: String { Self.deadQueue(of: jobsQueue) }

    package static func deadQueue(of jobsQueue: String) -> String { jobsQueue + ".dead" }
    /// Deadline messages (one per batch of submitted jobs), expiring `JOB_TIMEOUT` plus
    /// `TIMEOUT_GRACE` after they were published into `timeoutsQueue`. The delay is the queue's
    /// own TTL and in its name: messages expire only at the head of a queue, so instances with
    /// another `JOB_TIMEOUT` (or a new value after a change) get a queue of their own, and a short
    /// deadline never waits behind a long one.
    var deadlinesQueue: String { jobsQueue + ".deadlines." + Self.label(deadlineDelay) }
    var deadlineDelay: Duration { jobTimeout + timeoutGrace }
    var timeoutsQueue: String { jobsQueue + ".timeouts" }
    /// Jobs to long-poll (polling mode), taken by one instance at a time.
    var pollsQueue: String { jobsQueue + ".polls" }
    var pollsWaitQueue: String { jobsQueue + ".polls.wait" }
    /// Which requests have an outcome (``OutcomeRecord``): each instance reads it to decide timeouts.
    package var outcomesStream: String { jobsQueue + ".outcomes" }

    func retryQueue(_ step: Int) -> String {
        jobsQueue + ".retry." + Self.label(Self.retryDelays[step])
    }

    /// The retry step for the `attempt`-th retry, at least `minimum` long.
    static func retryStep(attempt: Int, minimum: Duration?) -> Int {
        var step = attempt <= 1 ? 0 : min(attempt - 1, retryDelays.count - 1)
        if let minimum {
            while step < retryDelays.count - 1, retryDelays[step] < minimum { step += 1 }
        }
        return step
    }

    /// How long the outcomes stream keeps a record at least, beyond `JOB_TIMEOUT`.
    static let outcomesKeptAfterTimeout: Duration = .seconds(3600)

    /// Stream retention: `JOB_TIMEOUT` plus an hour, in whole hours.
    var outcomesRetention: String {
        let hours = (jobTimeout + Self.outcomesKeptAfterTimeout).components.seconds / 3600 + 1
        return "\(hours)h"
    }

    /// Each queue with its arguments, in declaration order (also what the README lists).
    package var queues: [(name: String, arguments: AMQPTable)] {
        // Quorum queues dead-letter at least once only with reject-publish overflow; classic
        // queues keep the arguments of earlier versions, so that they are declared unchanged.
        let kind: AMQPTable =
            switch queueType {
            case .quorum: ["x-queue-type": .string("quorum")]
            case .classic: [:]
            }
        func deadLetteringTo(_ queue: String) -> AMQPTable {
            var arguments = kind.merging(["x-dead-letter-exchange": .string(""), "x-dead-letter-routing-key": .string(queue)])
            if queueType == .quorum {
                arguments["x-dead-letter-strategy"] = .string("at-least-once")
                arguments["x-overflow"] = .string("reject-publish")
            }
            return arguments
        }
        func ttl(_ delay: Duration) -> AMQPTable { ["x-message-ttl": .int64(delay.milliseconds)] }

        var jobs = kind
        if queueType == .quorum {
            jobs = deadLetteringTo(deadQueue).merging(["x-delivery-limit": .int64(Int64(Self.deliveryLimit))])
        }
        var queues: [(name: String, arguments: AMQPTable)] = [(jobsQueue, jobs), (deadQueue, kind)]
        for (step, delay) in Self.retryDelays.enumerated() {
            queues.append((retryQueue(step), deadLetteringTo(jobsQueue).merging(ttl(delay))))
        }
        let stream: AMQPTable = [
            "x-queue-type": .string("stream"), "x-max-age": .string(outcomesRetention),
            "x-stream-max-segment-size-bytes": .int64(50_000_000),
        ]
        queues.append((deadlinesQueue, deadLetteringTo(timeoutsQueue).merging(ttl(deadlineDelay))))
        queues.append((timeoutsQueue, kind))
        queues.append((pollsQueue, kind.merging(["x-single-active-consumer": .bool(true)])))
        queues.append((pollsWaitQueue, deadLetteringTo(pollsQueue).merging(ttl(Self.pollPause))))
        queues.append((outcomesStream, stream))
        return queues
    }

    /// Declares everything. An exchange or queue that exists with other arguments fails with a
    /// `BridgeError.topologyMismatch` that says which and what to do.
    func declare(on connection: AMQPConnection) async throws {
        let channel = try await connection.openChannel()
        do {
            try await channel.declareExchange(eventsExchange, type: "topic", durable: true)
        } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.preconditionFailed {
            throw BridgeError.topologyMismatch(exchange: eventsExchange, detail: error.replyText)
        }
        for queue in queues {
            do {
                try await channel.declareQueue(queue.name, durable: true, arguments: queue.arguments)
            } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.preconditionFailed {
                throw BridgeError.topologyMismatch(queue: queue.name, detail: error.replyText)
            }
        }
        try? await channel.close()
    }

    /// Versions before 0.2 bound the outcomes stream to the events exchange, so that the stream held
    /// a copy of every event; this one writes compact records instead. Once no instance of such a
    /// version runs, the binding only costs the broker a copy of every event, and
    /// `blitline-bridge migrate` removes it (unbinding is idempotent).
    package static let legacyOutcomesRoutingKey = "job.#"

    package func removeLegacyOutcomesBinding(on channel: AMQPChannel) async throws {
        try await channel.unbindQueue(outcomesStream, exchange: eventsExchange, routingKey: Self.legacyOutcomesRoutingKey)
    }

    /// `1s`, `2m`, `1h`, `90s` or `1500ms`: the largest unit that divides the delay.
    static func label(_ delay: Duration) -> String {
        let milliseconds = delay.milliseconds
        guard milliseconds % 1000 == 0 else { return "\(milliseconds)ms" }
        let seconds = milliseconds / 1000
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        return seconds % 60 == 0 ? "\(seconds / 60)m" : "\(seconds)s"
    }
}
