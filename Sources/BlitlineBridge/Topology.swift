import AMQP

/// The queues and exchange the bridge owns (contract section 4), all durable, declared at start-up
/// and after every reconnect.
struct Topology: Sendable {
    let jobsQueue: String
    let eventsExchange: String
    let jobTimeout: Duration

    /// Steps of the submit retry backoff: a TTL queue each, dead-lettering back into the jobs
    /// queue. One TTL per queue, so that a long delay never holds a short one back.
    static let retryDelays: [Duration] = [.seconds(1), .seconds(5), .seconds(30), .seconds(120)]
    /// How long a job waits in `pollsWaitQueue` before its next poll.
    static let pollPause: Duration = .seconds(1)

    /// Requests that cannot succeed as they are, with header `x-bridge-error`.
    var deadQueue: String { jobsQueue + ".dead" }
    /// One deadline message per submitted job, expiring after `JOB_TIMEOUT` into `timeoutsQueue`.
    var deadlinesQueue: String { jobsQueue + ".deadlines" }
    var timeoutsQueue: String { jobsQueue + ".timeouts" }
    /// Jobs to long-poll (polling mode), taken by one instance at a time.
    var pollsQueue: String { jobsQueue + ".polls" }
    var pollsWaitQueue: String { jobsQueue + ".polls.wait" }
    /// A stream of every event, which each instance reads to know which jobs have an outcome.
    var outcomesStream: String { jobsQueue + ".outcomes" }

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

    /// Stream retention: `JOB_TIMEOUT` plus an hour, in whole hours.
    var outcomesRetention: String {
        let hours = (jobTimeout + .seconds(3600)).components.seconds / 3600 + 1
        return "\(hours)h"
    }

    /// Each queue with its arguments, in declaration order (also what the README lists).
    var queues: [(name: String, arguments: AMQPTable)] {
        let backToJobs: AMQPTable = [
            "x-dead-letter-exchange": .string(""), "x-dead-letter-routing-key": .string(jobsQueue),
        ]
        var queues: [(name: String, arguments: AMQPTable)] = [(jobsQueue, [:]), (deadQueue, [:])]
        for (step, delay) in Self.retryDelays.enumerated() {
            var arguments = backToJobs
            arguments["x-message-ttl"] = .int64(Int64(delay.components.seconds * 1000))
            queues.append((retryQueue(step), arguments))
        }
        let toTimeouts: AMQPTable = [
            "x-dead-letter-exchange": .string(""), "x-dead-letter-routing-key": .string(timeoutsQueue),
        ]
        let pollPause: AMQPTable = [
            "x-message-ttl": .int64(Int64(Self.pollPause.components.seconds * 1000)),
            "x-dead-letter-exchange": .string(""), "x-dead-letter-routing-key": .string(pollsQueue),
        ]
        let stream: AMQPTable = [
            "x-queue-type": .string("stream"), "x-max-age": .string(outcomesRetention),
            "x-stream-max-segment-size-bytes": .int64(50_000_000),
        ]
        queues.append((deadlinesQueue, toTimeouts))
        queues.append((timeoutsQueue, [:]))
        queues.append((pollsQueue, ["x-single-active-consumer": .bool(true)]))
        queues.append((pollsWaitQueue, pollPause))
        queues.append((outcomesStream, stream))
        return queues
    }

    /// Declares everything. A queue that exists with other arguments fails with a
    /// `BridgeError.topologyMismatch` that says which and what to do.
    func declare(on connection: AMQPConnection) async throws {
        let channel = try await connection.openChannel()
        try await channel.declareExchange(eventsExchange, type: "topic", durable: true)
        for queue in queues {
            do {
                try await channel.declareQueue(queue.name, durable: true, arguments: queue.arguments)
            } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.preconditionFailed {
                throw BridgeError.topologyMismatch(queue: queue.name, detail: error.replyText)
            }
        }
        try await channel.bindQueue(outcomesStream, exchange: eventsExchange, routingKey: "job.#")
        try? await channel.close()
    }

    private static func label(_ delay: Duration) -> String {
        let seconds = delay.components.seconds
        return seconds % 60 == 0 ? "\(seconds / 60)m" : "\(seconds)s"
    }
}
