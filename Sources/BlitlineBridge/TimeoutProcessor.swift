import AMQP
import Logging

/// Turns expired deadlines into `timeout` failure events, for jobs with no outcome yet.
///
/// A deadline message (the deadlines of one or more jobs submitted together) reaches the timeouts
/// queue `JOB_TIMEOUT` after submission, whichever instance submitted the jobs; any instance may
/// take it. Before deciding, the instance makes sure it has read every event published so far
/// (`OutcomeLedger.sync`), so a result that came just in time wins.
struct TimeoutProcessor: Sendable {
    let configuration: BridgeConfiguration
    let ledger: OutcomeLedger
    let metrics: BridgeMetrics
    let logger: Logger
    /// How long a deadline message waits in hand before it is handed back, when its timeouts
    /// cannot be decided or published now.
    var requeuePause = RequestProcessor.requeuePause

    func process(_ delivery: some RequestMessage, publisher: EventPublisher) async throws {
        let (jobs, unreadable) = PendingJob.all(in: delivery.body)
        if unreadable > 0 {
            logger.error(
                "dropping unreadable parts of a deadline message",
                metadata: ["message_id": "\(delivery.properties.messageID ?? "")", "unreadable": "\(unreadable)"])
        }
        guard !jobs.isEmpty else {
            delivery.ack()
            return
        }
        do {
            guard try await ledger.sync(using: publisher) else {
                // Deciding now could time out a job whose result is in the part of the stream not
                // read yet: the deadline waits instead, and the session carries on.
                logger.warning("the outcomes stream is read too slowly to decide timeouts; deciding later")
                return try await requeueLater(delivery)
            }
            try await withThrowingDiscardingTaskGroup { group in
                for job in jobs where ledger.outcome(for: job.context.requestID) == nil {
                    group.addTask { try await timeOut(job, publisher: publisher) }
                }
            }
        } catch where PublishFailure.isSetback(error) {
            logger.warning("the broker refused a timeout event; deciding later", metadata: ["error": "\(error)"])
            metrics.requestSetbacks.increment()
            return try await requeueLater(delivery)
        }
        delivery.ack()
    }

    private func requeueLater(_ delivery: some RequestMessage) async throws {
        try await Task.sleep(for: requeuePause)
        delivery.requeue()
    }

    private func timeOut(_ job: PendingJob, publisher: EventPublisher) async throws {
        let event = JobEvent.failure(
            job.context, reason: .timeout,
            message: "no result from Blitline within \(configuration.jobTimeout) of submission",
            jobID: job.jobID)
        try await publisher.publish(event)
        ledger.record(event.outcome, for: job.context.requestID)
        metrics.event(event)
        logger.warning(
            "job timed out",
            metadata: ["request_id": "\(job.context.requestID)", "job_id": "\(job.jobID)"])
    }
}
