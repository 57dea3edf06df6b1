import AMQP
import Blitline
import Crypto
import Foundation
import Logging

/// Takes one request from the jobs queue to the point where the broker holds whatever finishes it
/// (contract sections 5, 7 and 8): validate, submit, then acknowledge only once the job's deadline
/// (and poll schedule) or the request's failure event is confirmed.
struct RequestProcessor: Sendable {
    /// How many submit attempts a request has had, on requests coming back from a retry queue.
    static let attemptHeader = "x-bridge-attempt"

    let configuration: BridgeConfiguration
    let topology: Topology
    let submitter: JobSubmitter
    /// Signs postback URLs; `nil` in polling mode.
    let postbackKeys: PostbackToken.Keys?
    let ledger: OutcomeLedger
    let metrics: BridgeMetrics
    let logger: Logger

    func process(_ delivery: AMQPDelivery, publisher: EventPublisher) async throws {
        metrics.requestsReceived.increment()
        metrics.requestsInFlight.increment()
        defer { metrics.requestsInFlight.decrement() }
        let context = RequestContext(delivery.properties)
        var logger = logger
        logger[metadataKey: "request_id"] = "\(context.requestID)"
        if let traceID = context.traceID { logger[metadataKey: "trace_id"] = "\(traceID)" }

        let job: BlitlineJob
        do {
            job = try BlitlineJob.validate(
                delivery.body, defaultApplicationID: configuration.blitlineApplicationID,
                maxBytes: configuration.maxRequestBytes)
        } catch {
            logger.notice("invalid request", metadata: ["error": "\(error.message)"])
            try await fail(delivery, context, reason: .invalidRequest, message: error.message, publisher: publisher)
            return
        }

        let attempt = delivery.properties.headers?[Self.attemptHeader]?.intValue ?? 1
        let submittedAt = Self.now()
        var postbackURL: String?
        if let base = configuration.postbackBaseURL, let postbackKeys {
            let token = PostbackToken(context: context, submittedAt: submittedAt).signed(with: postbackKeys)
            postbackURL = Self.postbackURL(base: base, token: token)
        }
        let prepared = job.prepared(applicationID: configuration.blitlineApplicationID, postbackURL: postbackURL)
        let started = ContinuousClock.now
        let outcome = await submitter.submit(prepared)
        metrics.submitDuration.record(since: started)

        switch outcome {
        case .accepted(let jobID, _):
            metrics.submission("accepted")
            logger[metadataKey: "job_id"] = "\(jobID)"
            var pending = PendingJob(
                context: context, jobID: jobID, submittedAt: submittedAt,
                deadline: submittedAt + Self.milliseconds(configuration.jobTimeout), applicationKey: "")
            if configuration.usesPostbacks {
                try await publisher.scheduleDeadline(pending)
            } else {
                pending.applicationKey = Self.applicationKey(prepared.applicationID ?? "")
                async let poll: Void = publisher.schedulePoll(pending, pause: false)
                try await publisher.scheduleDeadline(pending)
                try await poll
            }
            delivery.ack()
            logger.debug("submitted", metadata: ["attempt": "\(attempt)"])

        case .rejected(let message):
            metrics.submission("rejected")
            logger.notice("Blitline refused the job", metadata: ["error": "\(message)"])
            try await fail(delivery, context, reason: .rejected, message: message, publisher: publisher)

        case .transient(let failure):
            metrics.submission("transient")
            guard attempt < configuration.submitMaxAttempts else {
                let message = "Blitline could not be reached after \(attempt) attempts: \(failure.message)"
                logger.warning("giving up on the request", metadata: ["error": "\(failure.message)"])
                try await fail(delivery, context, reason: .submitFailed, message: message, publisher: publisher)
                return
            }
            let step = topology.retryStep(attempt: attempt, minimum: failure.retryAfter)
            logger.info(
                "submit failed; retrying later",
                metadata: ["attempt": "\(attempt)", "retry_in": "\(Topology.retryDelays[step])", "error": "\(failure.message)"])
            metrics.submitRetries.increment()
            try await publisher.retry(delivery, context: context, attempt: attempt + 1, step: step)
            delivery.ack()
        }
    }

    /// A request that cannot succeed as it is: its failure event, the request into the
    /// dead-letter queue, then the acknowledgement.
    private func fail(
        _ delivery: AMQPDelivery, _ context: RequestContext, reason: JobEvent.Reason, message: String,
        publisher: EventPublisher
    ) async throws {
        let event = JobEvent.failure(context, reason: reason, message: message)
        async let deadLettered: Void = publisher.deadLetter(delivery, context: context, error: "\(reason.rawValue): \(message)")
        try await publisher.publish(event)
        try await deadLettered
        ledger.record(event.outcome, for: context.requestID)
        metrics.event(event)
        delivery.ack()
    }

    static func postbackURL(base: String, token: String) -> String {
        (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/postback/" + token
    }

    /// The poll rate limit's key: the application id itself is a secret and stays out of messages.
    static func applicationKey(_ applicationID: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Array(applicationID.utf8))).prefix(12))
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}
