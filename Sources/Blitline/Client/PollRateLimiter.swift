import Synchronization

/// Keeps polls within a rate per application id, shared by every caller in the process.
///
/// A token bucket per application id: `ratePerSecond` tokens a second, up to `burst` at once.
/// ``acquire(applicationID:)`` waits for a token; callers that acquire before each poll never
/// exceed the rate for any id.
public final class PollRateLimiter: Sendable {
    private let ratePerSecond: Double
    private let burst: Int
    private let buckets = Mutex<[String: TokenBucket]>([:])

    /// Creates a limiter allowing `ratePerSecond` acquisitions a second per application id,
    /// `burst` of them at once.
    public init(ratePerSecond: Double, burst: Int = 1) {
        precondition(ratePerSecond > 0, "POLL_RATE must be positive")
        self.ratePerSecond = ratePerSecond
        self.burst = max(1, burst)
    }

    /// Waits until a token for `applicationID` is available and takes it.
    ///
    /// Throws `CancellationError` when the task is cancelled while waiting; the token is then
    /// handed back when no later caller has reserved after it.
    public func acquire(applicationID: String) async throws {
        let now = ContinuousClock.now
        let allowedAt = self.buckets.withLock { buckets in
            if buckets.count > 1024 { buckets = buckets.filter { !$0.value.isIdle(at: now) } }
            return buckets[applicationID, default: TokenBucket(ratePerSecond: self.ratePerSecond, burst: self.burst)]
                .reserve(at: now)
        }
        guard allowedAt > now else { return }
        do {
            try await Task.sleep(until: allowedAt, clock: .continuous)
        } catch {
            self.buckets.withLock { $0[applicationID]?.cancelReservation(returning: allowedAt) }
            throw error
        }
    }
}
