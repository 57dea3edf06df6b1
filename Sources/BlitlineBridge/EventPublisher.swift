import AMQP
import Blitline

/// Everything the bridge publishes, on one confirm-mode channel of the publishing connection.
/// Each call returns once the broker has confirmed; only then may a request be acknowledged.
struct EventPublisher: Sendable {
    let channel: AMQPChannel
    let topology: Topology

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

    /// The job's deadline: a message that expires after `timeout` into the timeouts queue.
    func scheduleDeadline(_ job: PendingJob, timeout: Duration) async throws {
        let milliseconds = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        try await channel.publish(
            job.json.jsonBytes, routingKey: topology.deadlinesQueue, mandatory: true,
            properties: AMQPProperties(
                contentType: "application/json", deliveryMode: AMQPProperties.persistent,
                expiration: String(max(milliseconds, 1)), messageID: job.context.requestID + "/deadline"))
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
