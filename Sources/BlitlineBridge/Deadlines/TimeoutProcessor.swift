import AMQP
import Blitline
import Logging

/// Turns expired deadlines into `timeout` failure events, for jobs with no outcome yet.
///
/// A deadline message (the deadlines of one or more jobs submitted together) reaches the timeouts
/// queue `JOB_TIMEOUT` plus `TIMEOUT_GRACE` after submission, whichever instance submitted the
/// jobs; any instance may take it. Before deciding, the instance makes sure it has read every
/// event published so far (`OutcomeLedger.sync`), and every event since the jobs' submission
/// (`OutcomeLedger.cover`), so that a result received before the deadline always wins. When it
/// cannot know yet (the stream is read too slowly, or must be read further back), the deadline
/// waits in the queue; the session carries on.
struct TimeoutProcessor: Sendable {
    let configuration: BridgeConfiguration
    let ledger: OutcomeLedger
    let metrics: BridgeMetrics
    let logger: Logger
    var clock = WallClock.system
    /// How long a deadline message waits in hand before a copy of it is put back, when its
    /// timeouts cannot be decided or published now.
    var requeuePause = RequestProcessor.requeuePause
    /// How long one deadline waits for the stream to be read further back before it is put back.
    var backfillWait: Duration = .seconds(30)

    func process(_ delivery: some RequestMessage, publisher: EventPublisher) async throws {
        if HeldEvent.isHeld(delivery) { return try await release(delivery, publisher: publisher) }
        let (jobs, unreadable) = PendingJob.all(in: delivery.body)
        if unreadable > 0 {
            logger.error(
                "dropping unreadable parts of a deadline message",
                metadata: ["message_id": "\(delivery.properties.messageID ?? "")", "unreadable": "\(unreadable)"])
        }
        guard let submitted = jobs.map(\.submittedAt).min(), let deadline = jobs.map(\.deadline).max() else {
            delivery.ack()
            return
        }
        // A deadline message of an earlier version expires at the deadline itself: a result
        // received just before it gets its grace all the same.
        let early = deadline + configuration.timeoutGrace.milliseconds - clock.now()
        if early > 0 { try await Task.sleep(for: .milliseconds(early)) }
        do {
            guard try await ledger.sync(using: publisher) else {
                logger.warning("the outcomes stream is read too slowly to decide timeouts; deciding later")
                return try await putBackLater(delivery, publisher: publisher)
            }
            guard await ledger.cover(since: submitted, timeout: backfillWait) else {
                logger.warning(
                    "reading the outcomes stream further back to decide timeouts; deciding later",
                    metadata: ["since": "\(Timestamp.text(millisecondsSinceEpoch: submitted))"])
                return try await putBackLater(delivery, publisher: publisher)
            }
            try await withThrowingDiscardingTaskGroup { group in
                for job in jobs where !ledger.isSettled(job.context.requestID) {
                    group.addTask { try await timeOut(job, publisher: publisher) }
                }
            }
        } catch where PublishFailure.isSetback(error) {
            logger.warning("the broker refused a timeout event; deciding later", metadata: ["error": "\(error)"])
            metrics.requestSetbacks.increment()
            return try await putBackLater(delivery, publisher: publisher)
        }
        delivery.ack()
    }

    /// After a pause, puts a copy of the deadline message back at the tail of the timeouts queue,
    /// or, when the broker refuses the copy too, hands the message itself back.
    private func putBackLater(_ delivery: some RequestMessage, publisher: EventPublisher) async throws {
        try await putBackLater(delivery, "a deadline message") { try await publisher.putBack(deadline: delivery) }
    }

    /// After a pause, publishes a copy of a message of the timeouts queue (`publishCopy`, at its
    /// tail) in the message's place, or, when the broker refuses the copy too, hands the message
    /// itself back.
    private func putBackLater(
        _ delivery: some RequestMessage, _ what: String, publishCopy: () async throws -> Void
    ) async throws {
        try await Task.sleep(for: requeuePause)
        if try await !delivery.replace(by: publishCopy) {
            logger.warning("the broker refused a copy of \(what); handed it back")
        }
    }

    /// Publishes a held event (``HeldEvent``). While the events exchange still refuses it, a copy
    /// goes back to the tail of the queue after a pause.
    private func release(_ delivery: some RequestMessage, publisher: EventPublisher) async throws {
        let messageID = delivery.properties.messageID ?? ""
        guard let held = HeldEvent(delivery) else {
            logger.error("dropping a held event whose headers are not the bridge's", metadata: ["message_id": "\(messageID)"])
            return delivery.ack()
        }
        do {
            if try await !publisher.publish(held) {
                logger.warning("the reply queue refused a held event, which the events exchange took", metadata: ["message_id": "\(messageID)"])
            }
        } catch where PublishFailure.isSetback(error) {
            logger.info("the events exchange still refuses a held event; trying again later", metadata: ["error": "\(error)"])
            metrics.requestSetbacks.increment()
            return try await putBackLater(delivery, "a held event") { try await publisher.hold(held) }
        }
        logger.info("published a held event", metadata: ["message_id": "\(messageID)"])
        delivery.ack()
    }

    /// Publishes the job's timeout in a span of its own, a child of the request's consumer span.
    private func timeOut(_ job: PendingJob, publisher: EventPublisher) async throws {
        try await job.context.withSpan("timeout \(job.jobID)", ofKind: .internal, logger: logger, jobID: job.jobID) {
            context, _, logger in
            let event = JobEvent.failure(
                context, reason: .timeout,
                message: "no result from Blitline within \(DurationText.text(configuration.jobTimeout)) of submission",
                jobID: job.jobID)
            try await publisher.publish(event)
            metrics.event(event)
            logger.warning("job timed out")
        }
    }
}
