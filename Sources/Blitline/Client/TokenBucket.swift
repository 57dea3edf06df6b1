/// A token bucket as a plain value (GCRA form): `rate` tokens a second, at most `burst` at once.
///
/// `reserve(at:)` hands out the instant from which the caller may act; reservations are never
/// closer together than one interval once the burst is spent.
package struct TokenBucket: Sendable {
    private let interval: Duration
    private let tolerance: Duration
    /// The instant at which the bucket would be full again ("theoretical arrival time").
    private var fullAt: ContinuousClock.Instant?

    /// Creates a bucket. `ratePerSecond` must be positive; `burst` is at least 1.
    package init(ratePerSecond: Double, burst: Int) {
        let interval = Self.interval(ratePerSecond)
        self.init(interval: interval, tolerance: interval * (max(burst, 1) - 1))
    }

    /// Creates a bucket of one token that lets a caller act up to `earliness` before its turn: a
    /// server's view of a client paced at the rate, whose requests arrive unevenly spaced.
    package init(ratePerSecond: Double, earliness: Duration) {
        self.init(interval: Self.interval(ratePerSecond), tolerance: max(earliness, .zero))
    }

    private init(interval: Duration, tolerance: Duration) {
        self.interval = interval
        self.tolerance = tolerance
    }

    private static func interval(_ ratePerSecond: Double) -> Duration {
        precondition(ratePerSecond > 0, "a rate must be positive")
        return .nanoseconds(Int64((1_000_000_000 / ratePerSecond).rounded(.up)))
    }

    /// Takes a token and returns when it may be used: `now` when one is available.
    package mutating func reserve(at now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let base = max(self.fullAt ?? now, now)
        let allowedAt = max(base - self.tolerance, now)
        self.fullAt = base + self.interval
        return allowedAt
    }

    /// Takes a token only when one is available at `now`.
    package mutating func tryTake(at now: ContinuousClock.Instant) -> Bool {
        let base = max(self.fullAt ?? now, now)
        guard base - self.tolerance <= now else { return false }
        self.fullAt = base + self.interval
        return true
    }

    /// Returns a token taken by `reserve` that was not used, if no later one was taken since.
    package mutating func cancelReservation(returning reservedAt: ContinuousClock.Instant) {
        guard let fullAt = self.fullAt, fullAt - self.interval - self.tolerance <= reservedAt else { return }
        self.fullAt = fullAt - self.interval
    }

    /// Whether the bucket is full at `now` (its state can then be forgotten).
    package func isIdle(at now: ContinuousClock.Instant) -> Bool {
        (self.fullAt ?? now) <= now
    }
}
