import AMQP
import Blitline
import Logging

/// Long-polls Blitline for jobs submitted without a postback (polling mode).
///
/// The poll schedule lives in the broker: each job is a message in the polls queue, which has a
/// single active consumer, so that only one instance polls at a time and its token bucket keeps
/// `POLL_RATE` over all instances together. A job still running goes back to the queue (after a
/// pause when Blitline answered at once); a job past its deadline plus `lateWindow` is dropped, the
/// deadline having reported it.
struct PollProcessor: Sendable {
    /// How long after the deadline a result is still looked for, and published as late.
    static let lateWindow: Duration = .seconds(300)
    /// Polls go out at this fraction of `POLL_RATE`: requests spaced exactly at the limit arrive
    /// closer together now and then (network jitter), and Blitline refuses those.
    static let rateMargin = 0.9

    let client: BlitlineClient
    let rateLimiter: PollRateLimiter
    let ledger: OutcomeLedger
    let metrics: BridgeMetrics
    let logger: Logger

    func process(_ delivery: AMQPDelivery, publisher: EventPublisher) async throws {
        guard let job = PendingJob(bytes: delivery.body) else {
            logger.error("dropping an unreadable poll message")
            delivery.ack()
            return
        }
        guard RequestProcessor.now() < job.deadline + RequestProcessor.milliseconds(Self.lateWindow) else {
            delivery.ack()
            return
        }
        try await rateLimiter.acquire(applicationID: job.applicationKey)
        let started = ContinuousClock.now
        switch await client.poll(jobID: job.jobID) {
        case .result(let result):
            metrics.poll("result")
            let late = ledger.hasTimedOut(job.context.requestID)
            let event = JobEvent.result(result, context: job.context, via: .poll, late: late)
            try await publisher.publish(event)
            ledger.record(event.outcome, for: job.context.requestID)
            metrics.event(event)
            metrics.jobDuration.recordMilliseconds(RequestProcessor.now() - job.submittedAt)
        case .pending:
            metrics.poll("pending")
            let answeredAtOnce = ContinuousClock.now - started < .seconds(1)
            try await publisher.schedulePoll(job, pause: answeredAtOnce)
        case .failed(let failure):
            metrics.poll("failed")
            logger.info(
                "poll failed; trying again",
                metadata: ["job_id": "\(job.jobID)", "error": "\(failure.message)"])
            try await publisher.schedulePoll(job, pause: true)
        }
        delivery.ack()
    }
}
