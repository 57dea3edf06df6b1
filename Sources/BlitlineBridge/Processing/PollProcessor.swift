import AMQP
import Blitline
import Logging
import ServiceLifecycle

/// Long-polls Blitline for jobs submitted without a postback (polling mode).
///
/// The poll schedule lives in the broker: each job is a message in the polls queue, which has a
/// single active consumer, so that only one instance polls at a time and its token bucket keeps
/// `POLL_RATE` over all instances together. That instance holds as many polls at once as the rate
/// and Blitline's hold time need (`POLL_CONCURRENCY`), so that polls of running jobs never keep
/// finished ones waiting. A job still running goes back to the queue (after a pause when Blitline
/// answered at once); a job past its deadline plus `lateWindow` is dropped, the deadline having
/// reported it.
struct PollProcessor: Sendable {
    /// How long after the deadline a result is still looked for, and published as late.
    static let lateWindow: Duration = .seconds(300)
    /// Polls go out at this fraction of `POLL_RATE`: requests spaced exactly at the limit arrive
    /// closer together now and then (network jitter), and Blitline refuses those.
    static let rateMargin = 0.9

    let client: BlitlineClient
    let rateLimiter: PollRateLimiter
    let metrics: BridgeMetrics
    let logger: Logger
    var clock = WallClock.system

    func process(_ delivery: some RequestMessage, publisher: EventPublisher) async throws {
        guard let job = PendingJob(bytes: delivery.body) else {
            logger.error("dropping an unreadable poll message")
            delivery.ack()
            return
        }
        guard Self.isWanted(job, now: clock.now()) else {
            delivery.ack()
            return
        }
        // A child of the request's consumer span, whose context the poll message carries; the
        // poll's HTTP request is its child, and its event carries it.
        try await job.context.withSpan("poll \(job.jobID)", ofKind: .consumer, logger: logger, jobID: job.jobID) {
            context, _, logger in
            try await process(delivery, job: job, context: context, publisher: publisher, logger: logger)
        }
    }

    private func process(
        _ delivery: some RequestMessage, job: PendingJob, context: RequestEnvelope, publisher: EventPublisher,
        logger: Logger
    ) async throws {
        // A drain does not wait for long polls: each poll in hand goes back to the queue at once,
        // for the next instance, unless its result is in.
        let polled: (outcome: PollOutcome, started: ContinuousClock.Instant)
        do {
            polled = try await cancelWhenGracefulShutdown { try await poll(job) }
        } catch where Task.isShuttingDownGracefully {
            return try await handBack(delivery, job: job, publisher: publisher)
        }
        let (outcome, started) = polled
        if Task.isShuttingDownGracefully {
            guard case .result = outcome else { return try await handBack(delivery, job: job, publisher: publisher) }
        }
        let step = Self.step(after: outcome, for: job, at: clock.now(), answeredIn: ContinuousClock.now - started)
        do {
            switch step {
            case .publish(let result, let late):
                metrics.poll(.result)
                let event = JobEvent.result(result, context: context, via: .poll, late: late)
                do {
                    // Blitline keeps a result only a few minutes: one the events exchange refuses
                    // is held in the broker until the exchange takes it.
                    if try await publisher.publish(event, holdingIfRefused: true, confirmed: {}) == .held {
                        metrics.eventsHeld.increment()
                        logger.warning("the events exchange refused a poll result's event; it is held until the exchange takes it")
                    }
                } catch where PublishFailure.isSetback(error) {
                    // Not even held: poll for it again after a pause, while Blitline keeps it.
                    logger.warning("the broker refused a poll result's event; polling again", metadata: ["error": "\(error)"])
                    metrics.requestSetbacks.increment()
                    try await publisher.schedulePoll(job, pause: true)
                    break
                }
                metrics.event(event)
                metrics.jobDuration.recordMilliseconds(clock.now() - job.submittedAt)
            case .pollAgain(let pause, let label):
                metrics.poll(label)
                if case .failed(let failure) = outcome {
                    logger.info("poll failed; trying again", metadata: ["error": "\(failure.message)"])
                }
                try await publisher.schedulePoll(job, pause: pause)
            }
        } catch where PublishFailure.isSetback(error) {
            // After a pause, a copy at the tail of the polls queue, for the next poll.
            logger.warning("the broker refused a poll message; putting the poll back later", metadata: ["error": "\(error)"])
            metrics.requestSetbacks.increment()
            try await Task.sleep(for: RequestProcessor.requeuePause)
            return try await handBack(delivery, job: job, publisher: publisher)
        }
        delivery.ack()
    }

    /// Hands a poll back as a copy at the tail of the polls queue (``RequestMessage/replace(by:)``):
    /// handed back itself at every stop, or every time its next poll is refused, a job polled
    /// across 20 of them would lose its result on RabbitMQ 4.0 – 4.2.
    private func handBack(_ delivery: some RequestMessage, job: PendingJob, publisher: EventPublisher) async throws {
        try await delivery.replace { try await publisher.schedulePoll(job, pause: false) }
    }

    /// Long-polls the job once its application id may poll, and returns the answer with the moment
    /// the poll that gave it started. An HTTP 429 holds every poll of the id for its `Retry-After`
    /// (or ``defaultRetryAfter``); this job then asks again in its turn, not at the back of the
    /// queue, while it is still wanted.
    private func poll(_ job: PendingJob) async throws -> (PollOutcome, ContinuousClock.Instant) {
        while true {
            try await rateLimiter.acquire(applicationID: job.applicationKey)
            let started = ContinuousClock.now
            metrics.pollsInFlight.increment()
            let outcome = await client.poll(jobID: job.jobID)
            metrics.pollsInFlight.decrement()
            guard let retryAfter = Self.retryAfter(of: outcome), Self.isWanted(job, now: clock.now()) else {
                return (outcome, started)
            }
            metrics.poll(.rateLimited)
            rateLimiter.pause(applicationID: job.applicationKey, for: retryAfter)
            logger.info(
                "Blitline refused a poll for its rate; every poll of the application id waits",
                metadata: ["job_id": "\(job.jobID)", "retry_after": "\(retryAfter)"])
        }
    }
}

extension PollProcessor {
    /// What to do after a long poll, apart from I/O.
    enum Step: Sendable, Equatable {
        /// Blitline had the result: publish its event (`late` once past the job's deadline).
        case publish(JobResult, late: Bool)
        /// Not yet (or the poll failed): poll again, after a pause when Blitline answered at once
        /// or failed, so that a job never spends the rate in a tight loop.
        case pollAgain(pause: Bool, PollOutcomeLabel)
    }

    /// The metric label of a poll that found no result.
    typealias PollOutcomeLabel = BridgeMetrics.PollOutcome

    /// Whether a job is still polled: until its deadline plus `lateWindow`, after which its
    /// timeout event has said all there is.
    static func isWanted(_ job: PendingJob, now: Int64) -> Bool {
        now < job.deadline + lateWindow.milliseconds
    }

    /// How long every poll of the application id waits after Blitline refused one for its rate
    /// (HTTP 429) without a usable `Retry-After`.
    static let defaultRetryAfter: Duration = .seconds(1)

    /// The pause Blitline asked for when it refused a poll for its rate; `nil` for any other answer.
    static func retryAfter(of outcome: PollOutcome) -> Duration? {
        guard case .failed(let failure) = outcome, failure.kind == .rateLimited else { return nil }
        return failure.retryAfter ?? defaultRetryAfter
    }

    /// Long polls held open at once so that polls can go out at `rate` a second while each is
    /// held up to `holdTime`: ⌈rate × hold time⌉ (Little's law), at least 1. Fewer would leave
    /// rate unspent while results wait in Blitline's cache, which keeps them only 5 minutes.
    static func concurrency(rate: Double, holdTime: Duration) -> Int {
        max(1, Int((rate * Double(holdTime.milliseconds) / 1000).rounded(.up)))
    }

    /// `now` is when the answer came, in milliseconds since the Unix epoch: a result after the
    /// job's deadline is late (its job gets a timeout all the same).
    static func step(after outcome: PollOutcome, for job: PendingJob, at now: Int64, answeredIn: Duration) -> Step {
        switch outcome {
        case .result(let result): .publish(result, late: now > job.deadline)
        case .pending: .pollAgain(pause: answeredIn < .seconds(1), .pending)
        case .failed: .pollAgain(pause: true, .failed)
        }
    }
}
