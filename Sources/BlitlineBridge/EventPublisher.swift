import AMQP
import Blitline

/// Everything the bridge publishes, on one confirm-mode channel of the publishing connection.
/// Each call returns once the broker has confirmed; only then may a request be acknowledged.
struct EventPublisher: Sendable {
    let channel: AMQPChannel
    let topology: Topology
    /// Deadlines scheduled at about the same moment share a message (`scheduleDeadline`).
    private let deadlines: Batcher<PendingJob>

    init(channel: AMQPChannel, topology: Topology) {
        self.channel = channel
        self.topology = topology
        deadlines = Batcher(maxBatch: 100) { jobs in
            try await Self.publishDeadlines(jobs, on: channel, queue: topology.deadlinesQueue)
        }
    }

    /// Publishes an event to the events exchange and, when the request asked, to its `reply_to`.
    func publish(_ event: JobEvent) async throws {
        let body = event.body
        let properties = event.properties
        guard let replyTo = event.context.replyTo else {
            try await channel.publish(
                body, exchange: topology.eventsExchange, routingKey: event.routingKey, properties: properties)
            return
        }
        async let reply: Void = channel.publish(body, routingKey: replyTo, properties: properties)
        try await channel.publish(
            body, exchange: topology.eventsExchange, routingKey: event.routingKey, properties: properties)
        try await reply
    }

    /// Moves a request to the dead-letter queue as it arrived, saying why in `x-bridge-error`.
    func deadLetter(_ delivery: AMQPDelivery, context: RequestContext, error: String) async throws {
        var properties = delivery.properties
        var headers = properties.headers ?? [:]
        headers["x-bridge-error"] = .string(error)
        headers[RequestContext.requestIDHeader] = .string(context.requestID)
        properties.headers = headers
        try await channel.publish(
            delivery.body, routingKey: topology.deadQueue, mandatory: true, properties: properties)
    }

    /// Puts a request in a delay queue from which it returns to the jobs queue for `attempt`.
    func retry(_ delivery: AMQPDelivery, context: RequestContext, attempt: Int, step: Int) async throws {
        var properties = delivery.properties
        var headers = properties.headers ?? [:]
        headers[RequestProcessor.attemptHeader] = .int32(Int32(attempt))
        headers[RequestContext.requestIDHeader] = .string(context.requestID)
        properties.headers = headers
        properties.deliveryMode = AMQPProperties.persistent
        try await channel.publish(
            delivery.body, routingKey: topology.retryQueue(step), mandatory: true, properties: properties)
    }

    /// The job's deadline: a message that expires at the job's `deadline` into the timeouts queue.
    /// Returns once the broker holds it.
    ///
    /// Jobs whose deadlines are scheduled while an earlier deadline message is on its way share the
    /// next message, which expires at the latest of their deadlines (milliseconds apart): a busy
    /// bridge stores one persistent message per batch of jobs rather than one per job.
    func scheduleDeadline(_ job: PendingJob) async throws {
        try await deadlines.add(job)
    }

    private static func publishDeadlines(_ jobs: [PendingJob], on channel: AMQPChannel, queue: String) async throws {
        let latest = jobs.map(\.deadline).max() ?? 0
        try await channel.publish(
            JSONValue.array(jobs.map(\.json)).jsonBytes, routingKey: queue, mandatory: true,
            properties: AMQPProperties(
                contentType: "application/json", deliveryMode: AMQPProperties.persistent,
                expiration: String(max(latest - RequestProcessor.now(), 1)),
                messageID: jobs[0].context.requestID + "/deadline"))
    }

    /// Schedules the job's next long poll, now or after a pause.
    func schedulePoll(_ job: PendingJob, pause: Bool) async throws {
        try await channel.publish(
            job.json.jsonBytes, routingKey: pause ? topology.pollsWaitQueue : topology.pollsQueue,
            mandatory: true,
            properties: AMQPProperties(
                contentType: "application/json", deliveryMode: AMQPProperties.persistent,
                messageID: job.context.requestID + "/poll"))
    }

    /// A marker in the outcomes stream, so a reader knows when it has seen everything before it.
    func publishMarker(_ id: String) async throws {
        try await channel.publish(
            [], routingKey: topology.outcomesStream, mandatory: true,
            properties: AMQPProperties(
                headers: [OutcomeLedger.outcomeHeader: .string(OutcomeLedger.marker)], messageID: id))
    }
}
