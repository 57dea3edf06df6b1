import AMQP
import AsyncSupport
import Blitline
import Crypto
import Foundation
import Logging
import Tracing

/// Carries one request through the steps `RequestRules` decides, up to the point where the
/// broker holds whatever finishes it: its deadline (and poll schedule), or its failure event and
/// dead letter. Only then is it acknowledged.
///
/// An error that concerns this request alone (a setback) is settled here, by putting the request
/// back for later with what it reached; only an error of the session itself is thrown, and the
/// request is then redelivered to the next session.
package struct RequestProcessor: Sendable {
    /// How long a request waits in hand before it is handed back to its queue, when not even a
    /// copy of it could be published.
    static let requeuePause: Duration = .seconds(5)
    /// How many pauses a request is held for at most while no copy of it can be published (20
    /// minutes), then handed back as it came all the same: RabbitMQ closes a channel that holds a
    /// delivery longer than its `consumer_timeout` (30 minutes by default), which would end the
    /// session and hand back every request in hand.
    static let maxPauses = 240
    /// The bytes of requests parsed, prepared and submitted at once: thousands of ordinary
    /// requests, sixteen of the largest `MAX_REQUEST_BYTES` allows by default. A request is parsed
    /// into a JSON tree, prepared, encoded and sent several times over; with `PREFETCH` requests
    /// of `MAX_REQUEST_BYTES` in hand, doing that for all of them at once would multiply the
    /// memory they take.
    static let workingBytes = 16 << 20

    let configuration: BridgeConfiguration
    let rules: RequestRules
    let submitter: any JobSubmitting
    /// Signs postback URLs; `nil` in polling mode.
    let postbackKeys: PostbackToken.Keys?
    let metrics: BridgeMetrics
    let logger: Logger
    var clock = WallClock.system
    var requeuePause = Self.requeuePause
    /// Shared by every request of the bridge.
    var workingBytes = Budget(capacity: Self.workingBytes)
    /// Whether a request id's outcome is recorded in the outcomes stream (``OutcomeLedger``).
    var isSettled: @Sendable (String) -> Bool = { _ in false }

    func process(_ request: some RequestMessage, effects: some RequestEffects) async throws {
        do {
            try await workingBytes.spending(request.body.count) {
                try await process(request, effects: effects, logger: logger)
            }
        } catch is CancellationError {
            // The session ended while the request waited its turn: the broker gives it to the next.
        }
    }

    private func process(_ request: some RequestMessage, effects: some RequestEffects, logger: Logger) async throws {
        metrics.requestsReceived.increment()
        metrics.requestsInFlight.increment()
        defer { metrics.requestsInFlight.decrement() }
        // The consumer span: what follows (the submission, the postback URL, the deadline and
        // poll messages, a failure event) carries its trace context.
        try await RequestEnvelope(request.properties).withSpan(
            "process \(configuration.jobsQueue)", ofKind: .consumer, logger: logger
        ) { context, span, logger in
            if span.isRecording {
                span.attributes["messaging.system"] = "rabbitmq"
                span.attributes["messaging.operation.type"] = "process"
                span.attributes["messaging.destination.name"] = configuration.jobsQueue
                span.attributes["messaging.message.id"] = request.properties.messageID
            }
            try await process(request, context: context, effects: effects, logger: &logger)
        }
    }

    private func process(
        _ request: some RequestMessage, context: RequestEnvelope, effects: some RequestEffects,
        logger: inout Logger
    ) async throws {
        var step = rules.firstStep(for: request, context: context, now: clock.now(), isSettled: isSettled)
        var setbacks = RequestRules.setbacks(in: request.properties)
        var pauses = 0
        while true {
            switch step {
            case .submit(let job, let attempt):
                // A session that is ending submits nothing more: it could not finish the job.
                guard !Task.isCancelled else { return }
                step = await submit(job, bytes: request.body.count, attempt: attempt, context: context, logger: &logger)
            case .giveBack:
                return
            case .settled:
                logger.info("the request came back with its outcome already recorded; acknowledged, not submitted again")
                request.ack()
                return
            case .retryAfterPause(let delayStep, let headers) where pauses < Self.maxPauses:
                logger.warning("no copy of the request could be published; holding it and trying again later")
                try await Task.sleep(for: requeuePause)
                pauses += 1
                step = .retry(delayStep: delayStep, headers: headers)
            case .requeueAfterPause, .retryAfterPause:
                logger.warning("no copy of the request could be published; handing it back to its queue later")
                try await Task.sleep(for: requeuePause)
                request.requeue()
                return
            case .countRedelivery, .schedule, .fail, .retry:
                do {
                    switch try await carryOut(step, for: request, context: context, effects: effects, logger: logger) {
                    case .acknowledge: request.ack()
                    case .deadLetterInPlace: request.deadLetterInPlace()
                    }
                    return
                } catch where PublishFailure.isSetback(error) {
                    logger.warning(
                        "the broker refused a message for this request; it is put back for later",
                        metadata: ["error": "\(error)", "setbacks": "\(setbacks + 1)"])
                    metrics.requestSetbacks.increment()
                    step = rules.afterSetback(of: step, setbacks: setbacks)
                    setbacks += 1
                }
            }
        }
    }

    private func submit(
        _ job: BlitlineJob, bytes: Int, attempt: Int, context: RequestEnvelope, logger: inout Logger
    ) async -> RequestRules.Step {
        let submittedAt = clock.now()
        var postbackURL: String?
        if let base = configuration.postbackBaseURL, let postbackKeys {
            let token = PostbackToken(context: context, submittedAt: submittedAt).signed(with: postbackKeys)
            postbackURL = Self.postbackURL(base: base, token: token)
        }
        let prepared = job.prepared(applicationID: configuration.blitlineApplicationID, postbackURL: postbackURL)
        let started = ContinuousClock.now
        let outcome = await submitter.submit(prepared, bytes: bytes)
        metrics.submitDuration.record(since: started)
        switch outcome {
        case .accepted(let jobID, _):
            metrics.submission(.accepted)
            logger[metadataKey: "job_id"] = .string(jobID)
            logger.debug("submitted", metadata: ["attempt": "\(attempt)"])
        case .rejected(let message):
            metrics.submission(.rejected)
            logger.notice("Blitline refused the job", metadata: ["error": "\(message)"])
        case .transient(let failure):
            metrics.submission(.transient)
            logger.info("submit failed", metadata: ["attempt": "\(attempt)", "error": "\(failure.message)"])
        }
        return rules.afterSubmit(
            outcome, attempt: attempt, submittedAt: submittedAt, applicationID: prepared.applicationID)
    }

    /// How a request whose step was carried out leaves the jobs queue.
    private enum Settlement {
        case acknowledge
        /// Its body was not kept: the quorum jobs queue dead-letters it whole into `.dead`.
        case deadLetterInPlace
    }

    private func carryOut(
        _ step: RequestRules.Step, for request: some RequestMessage, context: RequestEnvelope,
        effects: some RequestEffects, logger: Logger
    ) async throws -> Settlement {
        switch step {
        case .countRedelivery(let count):
            logger.info("redelivered request counted and put back", metadata: ["redeliveries": "\(count)"])
            // The copy keeps what the request reached before (its attempt, an accepted job id, …).
            var headers = AMQPTable((request.properties.headers?.entries ?? []).filter { BridgeHeader.all.contains($0.key) })
            headers[BridgeHeader.redeliveries] = .int32(Int32(count))
            try await effects.putBack(request, context: context, headers: headers, delayStep: nil)
            return .acknowledge
        case .schedule(let jobID, let submittedAt, let applicationID):
            var pending = PendingJob(
                context: context, jobID: jobID, submittedAt: submittedAt,
                deadline: submittedAt + configuration.jobTimeout.milliseconds, applicationKey: "")
            // Past its deadline, the job's timeout is decided now: the outcomes stream knows
            // whether a result came in time (a late one is published as such all the same).
            let due = pending.deadline <= clock.now()
            if due { logger.warning("the job's deadline passed while the request was put back; deciding its timeout now") }
            if !configuration.usesPostbacks { pending.applicationKey = Self.applicationKey(applicationID ?? "") }
            try await effects.scheduleDeadline(pending, due: due)
            // The poll only once the deadline is in: a poll in the broker beside a refused deadline
            // would start another chain of polls each time the request comes back to be scheduled.
            // A refused poll sends the deadline again instead; the second finds its request settled,
            // by the job's result or by the first one's timeout.
            if !configuration.usesPostbacks { try await effects.schedulePoll(pending, pause: false) }
            return .acknowledge
        case .fail(let reason, let message):
            if reason == .invalidRequest {
                logger.notice("invalid request", metadata: ["error": "\(message)"])
            } else {
                logger.warning("the request failed", metadata: ["reason": "\(reason.rawValue)", "error": "\(message)"])
            }
            let event = JobEvent.failure(context, reason: reason, message: message)
            // The event first: a dead letter is only written for a request whose event is out, so
            // that a setback between the two repeats the event (same id), never the dead letter.
            try await effects.publish(event)
            let settlement: Settlement
            if request.isBodyDiscarded, configuration.queueType == .quorum {
                // The body was never held: the broker, which still has it, dead-letters it whole.
                settlement = .deadLetterInPlace
            } else {
                try await effects.deadLetter(request, context: context, error: "\(reason.rawValue): \(message)")
                settlement = .acknowledge
            }
            metrics.event(event)
            return settlement
        case .retry(let delayStep, let headers):
            if headers[BridgeHeader.attempt] != nil { metrics.submitRetries.increment() }
            logger.info("request put back for later", metadata: ["retry_in": "\(Topology.retryDelays[delayStep])"])
            try await effects.putBack(request, context: context, headers: headers, delayStep: delayStep)
            return .acknowledge
        case .submit, .giveBack, .settled, .requeueAfterPause, .retryAfterPause:
            preconditionFailure("\(step) is not carried out by publishing")
        }
    }

    /// `base` is `POSTBACK_BASE_URL`, which the settings keep without a trailing slash.
    package static func postbackURL(base: String, token: String) -> String {
        base + "/postback/" + token
    }

    /// The poll rate limit's key: the application id itself is a secret and stays out of messages.
    static func applicationKey(_ applicationID: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Array(applicationID.utf8))).prefix(12))
    }

}

extension RequestRules {
    /// The first step for a message as it arrived.
    func firstStep(
        for request: some RequestMessage, context: RequestEnvelope, now: Int64, isSettled: (String) -> Bool
    ) -> Step {
        firstStep(
            for: Arrival(
                body: request.body, properties: request.properties, redelivered: request.redelivered,
                isBodyDiscarded: request.isBodyDiscarded, bodySize: request.bodySize),
            context: context, now: now, isSettled: isSettled)
    }
}
