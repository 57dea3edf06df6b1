import Synchronization

/// Keeps polls within a rate per application id, shared by every caller in the process.
///
/// A token bucket per application id: `ratePerSecond` tokens a second, up to `burst` at once.
/// ``acquire(applicationID:)`` waits for a token; callers that acquire before each poll never
/// exceed the rate for any id. When Blitline refuses a poll for its rate (HTTP 429),
/// ``pause(applicationID:for:)`` holds every acquisition for that id until its `Retry-After` has
/// passed, those already waiting for a token included.
public final class PollRateLimiter: Sendable {
    private struct Application {
        var bucket: TokenBucket
        /// No token for this id is handed out before this instant (Blitline's `Retry-After`).
        var pausedUntil: ContinuousClock.Instant?

        func isIdle(at now: ContinuousClock.Instant) -> Bool {
            bucket.isIdle(at: now) && (pausedUntil ?? now) <= now
        }
    }

    /// The longest a `Retry-After` is obeyed: a larger one (a misconfigured proxy, a date far
    /// ahead) would otherwise stop polling for that id for as long as it says.
    public static let maxPause: Duration = .seconds(60)

    private let ratePerSecond: Double
    private let burst: Int
    private let applications = Mutex<[String: Application]>([:])

    /// Creates a limiter allowing `ratePerSecond` acquisitions a second per application id,
    /// `burst` of them at once.
    public init(ratePerSecond: Double, burst: Int = 1) {
        precondition(ratePerSecond > 0, "POLL_RATE must be positive")
        self.ratePerSecond = ratePerSecond
        self.burst = max(1, burst)
    }

    /// Waits until a token for `applicationID` is available and takes it.
    ///
    /// A caller that was waiting for its token when the id was paused waits for the pause to end
    /// and queues again. Throws `CancellationError` when the task is cancelled while waiting; the
    /// token is then handed back when no later caller has reserved after it.
    public func acquire(applicationID: String) async throws {
        while true {
            let now = ContinuousClock.now
            let wait = self.applications.withLock { applications -> Wait in
                if applications.count > 1024 { applications = applications.filter { !$0.value.isIdle(at: now) } }
                var application = applications[applicationID] ?? self.newApplication()
                defer { applications[applicationID] = application }
                if let pausedUntil = application.pausedUntil, pausedUntil > now { return .paused(until: pausedUntil) }
                return .token(at: application.bucket.reserve(at: now))
            }
            switch wait {
            case .paused(let until):
                try await Task.sleep(until: until, clock: .continuous)
            case .token(let allowedAt):
                if allowedAt > now {
                    do {
                        try await Task.sleep(until: allowedAt, clock: .continuous)
                    } catch {
                        self.applications.withLock { $0[applicationID]?.bucket.cancelReservation(returning: allowedAt) }
                        throw error
                    }
                }
                let pausedUntil = self.applications.withLock { $0[applicationID]?.pausedUntil }
                guard let pausedUntil, pausedUntil > ContinuousClock.now else { return }
            }
        }
    }

    /// Holds every poll for `applicationID` for `duration` from now (at most ``maxPause``): Blitline
    /// answered HTTP 429 with this `Retry-After`. A shorter pause never cuts a longer one short.
    public func pause(applicationID: String, for duration: Duration) {
        let until = ContinuousClock.now + min(max(duration, .zero), Self.maxPause)
        self.applications.withLock { applications in
            var application = applications[applicationID] ?? self.newApplication()
            application.pausedUntil = max(application.pausedUntil ?? until, until)
            applications[applicationID] = application
        }
    }

    private enum Wait {
        case paused(until: ContinuousClock.Instant)
        case token(at: ContinuousClock.Instant)
    }

    private func newApplication() -> Application {
        Application(bucket: TokenBucket(ratePerSecond: self.ratePerSecond, burst: self.burst))
    }
}
