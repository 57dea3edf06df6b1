import Blitline
import Testing

@Suite("PollRateLimiter")
struct PollRateLimiterTests {
    @Test("20 acquisitions at 10/s for one application id take at least 1.8 s, shared by concurrent callers")
    func rate() async throws {
        let limiter = PollRateLimiter(ratePerSecond: 10)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<5 { try await limiter.acquire(applicationID: "app") } }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(1800))
        #expect(elapsed < .seconds(3))
    }

    @Test("application ids have separate buckets")
    func separateIDs() async throws {
        let limiter = PollRateLimiter(ratePerSecond: 2)
        let started = ContinuousClock.now
        for id in ["a", "b", "c", "d"] { try await limiter.acquire(applicationID: id) }
        // One shared bucket would take 1.5 s for four; separate ones answer at once.
        #expect(ContinuousClock.now - started < .milliseconds(900))
    }

    @Test("a cancelled waiter throws promptly and hands its token back")
    func cancellation() async throws {
        let limiter = PollRateLimiter(ratePerSecond: 1)
        try await limiter.acquire(applicationID: "a")
        let waiter = Task { try await limiter.acquire(applicationID: "a") }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        let started = ContinuousClock.now
        try await limiter.acquire(applicationID: "a")
        let waited = ContinuousClock.now - started
        // One interval, not two: the cancelled waiter's token came back. The upper bound leaves room
        // for a busy machine (the suite runs beside others).
        #expect(waited < .milliseconds(1800) && waited > .milliseconds(700))
    }
}
