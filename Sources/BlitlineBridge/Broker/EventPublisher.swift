import AMQP
import Blitline
import NIOCore

/// Everything the bridge publishes, on one confirm-mode channel of the publishing connection.
/// Each call returns once the broker has confirmed; only then may a request be acknowledged.
///
/// A call that fails with an error for which `RequestSettlement.isSetback` holds concerns its
/// message alone; any other error means the session is over.
///
/// A class: each postback takes the session's publisher, and a copy would retain every name of
/// the topology.
final class EventPublisher: Sendable {
    let channel: PublishChannel
    let topology: Topology
    /// Deadlines scheduled at about the same moment share a message (`scheduleDeadline`); a busy
    /// bridge lets a message gather for `deadlineLinger`.
    private let deadlines: Batcher<PendingJob>
    /// Events confirmed at about the same moment share an outcome record (`publish`); a busy
    /// bridge lets a record gather for `OutcomeRecord.linger`.
    private let settled: Batcher<String>

    /// - Parameter timers: The event loop the bridge's work runs on, whose timers end the batches'
    ///   lingers.
    init(channel: PublishChannel, topology: Topology, timers: any EventLoop) {
        self.channel = channel
        self.topology = topology
        deadlines = Batcher(maxBatch: 100, linger: Self.deadlineLinger, lingersForAnyItem: true, timers: timers) { jobs in
            try await Self.publishDeadlines(jobs, on: channel, queue: topology.deadlinesQueue)
        }
        settled = Batcher(maxBatch: OutcomeRecord.maxRequests, linger: OutcomeRecord.linger, timers: timers) { requestIDs in
            for record in OutcomeRecord.records(settling: requestIDs) {
                do {
                    try await channel.publish(
                        record.body, routingKey: topology.outcomesStream, mandatory: true, properties: record.properties)
                } catch let error as AMQPError where error.code == .returned {
                    // Still a setback of the events' requests; the text says what to do.
                    throw AMQPError(
                        .returned, replyCode: error.replyCode,
                        "the outcomes stream \(topology.outcomesStream) is gone and could not be declared again, "
                            + "so no outcome can be recorded (\(error.replyText))")
                }
            }
        }
    }

    /// Fails the deadline messages and outcome records on their way, and those after them, at
    /// once: the session is being cancelled (``Batcher/stop()``).
    func stop() {
        deadlines.stop()
        settled.stop()
    }

    /// Publishes an event to the events exchange and, when the request asked, to its `reply_to`;
    /// then, unless it is `late`, records its request as settled in the outcomes stream.
    ///
    /// The record follows the event's confirm, never precedes it: a stream may say a request is
    /// settled only once its event is in the broker. Events confirmed while a record is on its way
    /// share the next one (``OutcomeRecord``), so a busy bridge adds one small stream message per
    /// batch of events.
    func publish(_ event: JobEvent) async throws {
        try await publish(event, confirmed: {})
    }

    /// What became of an event: in the events exchange, or held in the timeouts queue.
    enum Delivery: Sendable {
        case published, held
    }

    /// ``publish(_:)``, calling `confirmed` once the event is in the broker, before its record is
    /// written.
    ///
    /// With `holdingIfRefused`, for results Blitline sends only until its retries run out: an
    /// event that the events exchange refuses for its own sake (a setback: a full downstream queue
    /// with `reject-publish`, say) is held in the timeouts queue instead, published from there once
    /// the exchange takes it (``HeldEvent``), and its request is recorded as settled all the same.
    /// The call fails only when the broker refuses the held copy too.
    @discardableResult
    func publish(_ event: JobEvent, holdingIfRefused hold: Bool = false, confirmed: () -> Void) async throws -> Delivery {
        let body = event.body(source: topology.eventSource)
        let properties = event.properties
        // A record lingering for more events waits for this one's, and only for events on their way.
        let recorded = event.settlesItsRequest
        if recorded { settled.expect() }
        let replyTo = event.context.routableReplyTo
        let refused: (any Error)?
        var replyRefused: (any Error)?
        if let replyTo {
            async let reply = Self.failure { try await channel.publish(body, routingKey: replyTo, properties: properties) }
            refused = await Self.failure { try await publishToEvents(body, routingKey: event.routingKey, properties: properties) }
            replyRefused = await reply
        } else {
            refused = await Self.failure { try await publishToEvents(body, routingKey: event.routingKey, properties: properties) }
        }
        var delivery = Delivery.published
        if let refused {
            do {
                guard hold, PublishFailure.isSetback(refused) else { throw refused }
                try await self.hold(
                    HeldEvent(
                        body: body, properties: properties, routingKey: event.routingKey,
                        replyTo: replyRefused == nil ? nil : replyTo))
            } catch {
                if recorded { settled.withdraw() }
                // The exchange's refusal, unless holding failed for a reason of its own (the session).
                throw PublishFailure.isSetback(error) ? refused : error
            }
            delivery = .held
        } else if let replyRefused {
            // Refused by the reply queue only, the event is in the broker all the same: its request
            // is settled, or its deadline would time out a job that has its result. The caller
            // still fails (a postback answered 503), so that the reply queue gets another chance.
            if recorded { try? await settled.add(event.context.requestID, announced: true) }
            throw replyRefused
        }
        confirmed()
        if recorded { try await settled.add(event.context.requestID, announced: true) }
        return delivery
    }

    /// An exchange deleted while the bridge runs is not declared again (the downstream queues'
    /// bindings went with it): events wait for it, refused by ``PublishChannel`` meanwhile.
    private func publishToEvents(_ body: [UInt8], routingKey: String, properties: AMQPProperties) async throws {
        try await channel.publish(body, exchange: topology.eventsExchange, routingKey: routingKey, properties: properties)
    }

    /// The error `publish` throws, if any.
    private static func failure(_ publish: () async throws -> Void) async -> (any Error)? {
        do {
            try await publish()
            return nil
        } catch {
            return error
        }
    }

    /// Puts an event in the timeouts queue, to be published from there (``HeldEvent``).
    func hold(_ held: HeldEvent) async throws {
        try await channel.publish(held.body, routingKey: topology.timeoutsQueue, mandatory: true, properties: held.heldProperties)
    }

    /// Publishes a held event to the events exchange and then, when it was held for it too, to its
    /// reply queue: not before, or the reply queue would get a copy with every refused try. Fails
    /// when the exchange refuses it; returns `false` when only the reply queue did, for which it is
    /// not held any longer: the event is in the broker.
    func publish(_ held: HeldEvent) async throws -> Bool {
        try await publishToEvents(held.body, routingKey: held.routingKey, properties: held.properties)
        guard let replyTo = held.replyTo else { return true }
        return await Self.failure { try await channel.publish(held.body, routingKey: replyTo, properties: held.properties) } == nil
    }

    /// Moves a request to the dead-letter queue as it arrived (body, properties, headers), saying
    /// why in `x-bridge-error`. A request whose headers leave no room for the bridge's is
    /// dead-lettered without its own headers, and the error says so.
    func deadLetter(_ request: RequestMessage, context: RequestEnvelope, error: String) async throws {
        let headers: AMQPTable = [BridgeHeader.error: .string(error), BridgeHeader.requestID: .string(context.requestID)]
        try await publishCopy(of: request, to: topology.deadQueue, headers: headers) {
            $0[BridgeHeader.error] = .string(error + " (the request's own headers did not fit beside this one and were left out)")
        }
    }

    /// Puts a copy of a request in the retry queue of `delayStep` (from which it returns to the
    /// jobs queue), or straight back into the jobs queue when `delayStep` is `nil`.
    func putBack(_ request: RequestMessage, context: RequestEnvelope, headers: AMQPTable, delayStep: Int?) async throws {
        var headers = headers
        headers[BridgeHeader.requestID] = .string(context.requestID)
        let queue = delayStep.map(topology.retryQueue) ?? topology.jobsQueue
        try await publishCopy(of: request, to: queue, headers: headers) { _ in }
    }

    /// Publishes a clean copy (`copyForRepublishing`); when the broker could not be sent the
    /// copy's headers in one frame, again without the producer's headers, marked by `note`.
    private func publishCopy(
        of request: RequestMessage, to queue: String, headers: AMQPTable, note: (inout AMQPTable) -> Void
    ) async throws {
        do {
            try await channel.publish(
                request.body, routingKey: queue, mandatory: true,
                properties: request.properties.copyForRepublishing(bridgeHeaders: headers))
        } catch let error as AMQPError where error.code == .invalidArgument {
            var headers = headers
            note(&headers)
            if let traceparent = request.properties.headers?["traceparent"] { headers["traceparent"] = traceparent }
            try await channel.publish(
                request.body, routingKey: queue, mandatory: true,
                properties: request.properties.copyForRepublishing(bridgeHeaders: headers, keepingHeaders: false))
        }
    }

    /// The job's deadline: a message in the deadlines queue, which expires `JOB_TIMEOUT` plus
    /// `TIMEOUT_GRACE` later into the timeouts queue. Returns once the broker holds it.
    ///
    /// Jobs whose deadlines are scheduled while an earlier deadline message is on its way share the
    /// next message (their submissions milliseconds apart), which a busy bridge (the message before
    /// held more than one job) lets gather for `deadlineLinger`: it stores one persistent message
    /// per batch of jobs rather than one per job, and each request is acknowledged that much later.
    ///
    /// A `due` deadline (the job is past it) goes alone, straight into the timeouts queue.
    func scheduleDeadline(_ job: PendingJob, due: Bool) async throws {
        if due {
            try await Self.publishDeadlines([job], on: channel, queue: topology.timeoutsQueue)
        } else {
            try await deadlines.add(job)
        }
    }

    /// How long a busy bridge lets a deadline message gather jobs (at most 100) before it goes.
    /// Measured with `deploy/bench.sh --fresh-postback-connections`: 20 → 48 jobs a message, a
    /// sixth less broker CPU per job (deploy/BENCHMARKS.md).
    static let deadlineLinger: Duration = .milliseconds(5)

    private static func publishDeadlines(_ jobs: [PendingJob], on channel: PublishChannel, queue: String) async throws {
        try await channel.publish(
            JSONValue.array(jobs.map(\.json)).jsonBytes, routingKey: queue, mandatory: true,
            properties: AMQPProperties(
                contentType: "application/json", deliveryMode: AMQPProperties.persistent,
                messageID: Self.deadlineMessageID(jobs)))
    }

    /// `{first request id}/deadline` for one job, `{first request id}/deadline+{others}` for a batch:
    /// what an operator reading the queue sees is a batch, not the first job's own deadline.
    static func deadlineMessageID(_ jobs: [PendingJob]) -> String {
        jobs[0].context.requestID + "/deadline" + (jobs.count > 1 ? "+\(jobs.count - 1)" : "")
    }

    /// Puts a copy of a deadline message at the tail of the timeouts queue, to be decided again
    /// (``RequestMessage/replace(by:)``): handed back itself every 5 s, a deadline whose timeouts a
    /// full downstream queue refuses for a couple of minutes would be dropped on RabbitMQ 4.0 – 4.2.
    func putBack(deadline: RequestMessage) async throws {
        try await channel.publish(
            deadline.body, routingKey: topology.timeoutsQueue, mandatory: true,
            properties: deadline.properties.copyForRepublishing(bridgeHeaders: [:], keepingHeaders: false))
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
                headers: [BridgeHeader.outcome: .string(OutcomeLedger.marker)], messageID: id))
    }
}
