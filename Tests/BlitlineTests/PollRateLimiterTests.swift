import Blitline
import Testing

@Suite("PollRateLimiter")
struct PollRateLimiterTests {
    // PollRateLimiter reads the continuous clock itself, so these tests run on wall time on a
    // machine that other tests load heavily (the bucket's arithmetic is tested on chosen instants
    // in TokenBucketTests). Every interval is long enough that a stall of several seconds cannot
    // hand out a token early; where one outcome must come before another, the test races them
    // rather than bounding the time. Only the cancellation test has an upper bound: telling one
    // interval from two needs one, and it allows a stall of almost a whole interval.

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
        #expect(ContinuousClock.now - started >= .milliseconds(1800))
    }

    @Test("application ids have separate buckets")
    func separateIDs() async throws {
        let limiter = PollRateLimiter(ratePerSecond: 0.05)
        try await limiter.acquire(applicationID: "a")
        // a's next token is due 20 s after its first. Separate buckets hand b, c and d theirs at once;
        // one shared bucket would make them wait behind a's, 20 s apart. Which finishes first tells
        // the two apart, however long the machine takes.
        let first = try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                try await limiter.acquire(applicationID: "a")
                return "a's second token"
            }
            group.addTask {
                for id in ["b", "c", "d"] { try await limiter.acquire(applicationID: id) }
                return "b, c and d"
            }
            defer { group.cancelAll() }
            return try await group.next()
        }
        #expect(first == "b, c and d", "application ids b, c and d waited behind a's token")
    }

    @Test("a cancelled waiter throws promptly and hands its token back")
    func cancellation() async throws {
        // One token every 20 s: the suite's first seconds, busy, stalled this test's steps for
        // 5 s on a loaded machine, long enough for the waiter to get its token before it was cancelled.
        let limiter = PollRateLimiter(ratePerSecond: 0.05)
        try await limiter.acquire(applicationID: "a")
        let firstToken = ContinuousClock.now
        let waiter = Task { try await limiter.acquire(applicationID: "a") }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        try await limiter.acquire(applicationID: "a")
        let sinceFirst = ContinuousClock.now - firstToken
        // The next token is due one interval (20 s) after the first, not two: the cancelled
        // waiter's token came back. Measured from the first token, so a slow machine between the
        // steps cannot shorten the wait below one interval.
        #expect(sinceFirst > .milliseconds(19_900) && sinceFirst < .milliseconds(39_900), "\(sinceFirst)")
    }

    @Test("after a 429, no poll for that application id goes out before its Retry-After has passed, not even one already waiting for its token; other ids carry on")
    func retryAfterHoldsTheWholeApplicationID() async throws {
        let limiter = PollRateLimiter(ratePerSecond: 0.05)
        try await limiter.acquire(applicationID: "a")
        // Reserves the next token, due 20 s after the first, and sleeps until then: the 429 below
        // comes well before it, unless the machine stalls for that long.
        let waiting = Task {
            try await limiter.acquire(applicationID: "a")
            return ContinuousClock.now
        }
        try await Task.sleep(for: .milliseconds(50))
        let refused = ContinuousClock.now
        limiter.pause(applicationID: "a", for: .seconds(25))
        let later = Task {
            try await limiter.acquire(applicationID: "a")
            return ContinuousClock.now
        }
        try await limiter.acquire(applicationID: "b")
        let otherID = ContinuousClock.now
        #expect(try await waiting.value >= refused + .seconds(25))
        #expect(try await later.value >= refused + .seconds(25))
        #expect(otherID < refused + .seconds(25), "application id b waited for a's Retry-After")
    }

    @Test("a shorter Retry-After does not cut a longer one short")
    func longerPauseHolds() async throws {
        let limiter = PollRateLimiter(ratePerSecond: 100)
        let refused = ContinuousClock.now
        limiter.pause(applicationID: "a", for: .seconds(1))
        limiter.pause(applicationID: "a", for: .milliseconds(100))
        try await limiter.acquire(applicationID: "a")
        #expect(ContinuousClock.now >= refused + .seconds(1))
    }
}
