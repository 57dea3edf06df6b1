import AsyncSupport
import Blitline
import Synchronization

/// The poll cache behind `GET /listen/{job_id}`: results of jobs without a postback, kept for a
/// while, long-poll waiters, and the per-application-id rate limit.
///
/// It counts what a client of Blitline would lose: results that expired before any poll read them
/// (`results_expired_unread`), and the longest a result waited for its first reader
/// (`result_wait_max_ms`).
final class PollCache: Sendable {
    private struct Entry {
        var body: [UInt8]?
        var applicationID: String
        /// When the result was published; `nil` once a poll has read it (or before it is published).
        var unreadSince: ContinuousClock.Instant?
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// (expiry, job id) in completion order; expiries only grow, so the front expires first.
        var expiries: [(ContinuousClock.Instant, String)] = []
        var expiryHead = 0
        /// Long polls by job id, for a result answers its own job's polls only (a `WaitingLine`
        /// would scan every poll of every job). A poll cancelled before it parks is remembered in
        /// `cancelledWaiters`, so that it does not park after all.
        var waiters: [String: [Int: CheckedContinuation<[UInt8]?, Never>]] = [:]
        var cancelledWaiters: Set<Int> = []
        var nextWaiter = 0
        var buckets: [String: TokenBucket] = [:]
    }

    private let state = Mutex(State())
    private let retention: Duration
    private let rate: Double
    private let statistics: StatisticsRecorder

    init(retention: Duration, ratePerSecond: Double, statistics: StatisticsRecorder) {
        self.retention = retention
        self.rate = ratePerSecond
        self.statistics = statistics
    }

    /// Notes a job that will be published here once processed.
    func expect(jobID: String, applicationID: String) {
        self.state.withLock { $0.entries[jobID] = Entry(body: nil, applicationID: applicationID) }
    }

    /// Publishes a finished job's body and wakes its waiters.
    func publish(jobID: String, applicationID: String, body: [UInt8]) {
        let now = ContinuousClock.now
        let (waiters, expiredUnread) = self.state.withLock { state in
            let expiredUnread = Self.purge(&state, now: now)
            let waiters = state.waiters.removeValue(forKey: jobID) ?? [:]
            state.entries[jobID] = Entry(body: body, applicationID: applicationID, unreadSince: waiters.isEmpty ? now : nil)
            state.expiries.append((now + self.retention, jobID))
            return (waiters, expiredUnread)
        }
        self.record(expiredUnread: expiredUnread, waited: waiters.isEmpty ? nil : .zero)
        for waiter in waiters.values { waiter.resume(returning: body) }
    }

    /// Drops the results that have expired, counting those no poll read.
    func purgeExpired() {
        let expiredUnread = self.state.withLock { Self.purge(&$0, now: .now) }
        self.record(expiredUnread: expiredUnread, waited: nil)
    }

    /// How early a poll may arrive for its turn at the rate. A client that sends at the rate does
    /// not control when its polls arrive: a poll that had to open a connection (the first ones,
    /// each long poll holding its own) lands tens of milliseconds behind the next, which would
    /// otherwise be refused. Over a second, the rate holds all the same.
    static let pollEarliness: Duration = .milliseconds(100)

    /// Takes a rate token for the application id that owns `jobID` (unknown ids share one bucket).
    func admit(jobID: String) -> Bool {
        let now = ContinuousClock.now
        return self.state.withLock { state in
            let key = state.entries[jobID]?.applicationID ?? ""
            if state.buckets.count > 4096 { state.buckets = state.buckets.filter { !$0.value.isIdle(at: now) } }
            return state.buckets[key, default: TokenBucket(ratePerSecond: self.rate, earliness: Self.pollEarliness)]
                .tryTake(at: now)
        }
    }

    /// The job's body once published, waiting at most `limit`; `nil` when it is not there in time.
    func wait(jobID: String, limit: Duration) async -> [UInt8]? {
        let now = ContinuousClock.now
        let (ready, expiredUnread, waited) = self.state.withLock { state -> ([UInt8]?, Int, Duration?) in
            let expiredUnread = Self.purge(&state, now: now)
            let unreadSince = state.entries[jobID]?.unreadSince
            state.entries[jobID]?.unreadSince = nil
            return (state.entries[jobID]?.body, expiredUnread, unreadSince.map { now - $0 })
        }
        self.record(expiredUnread: expiredUnread, waited: waited)
        if let ready { return ready }
        let waiter = self.state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await DeadlineRace.value(within: limit, fallback: nil) {
            await self.waitIndefinitely(jobID: jobID, waiter: waiter)
        }
    }

    private func waitIndefinitely(jobID: String, waiter: Int) async -> [UInt8]? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeWith: [UInt8]?? = self.state.withLock { state in
                    if state.cancelledWaiters.remove(waiter) != nil { return .some(nil) }
                    if let body = state.entries[jobID]?.body {
                        state.entries[jobID]?.unreadSince = nil
                        return .some(body)
                    }
                    state.waiters[jobID, default: [:]][waiter] = continuation
                    return .none
                }
                if let resumeWith { continuation.resume(returning: resumeWith) }
            }
        } onCancel: {
            let continuation = self.state.withLock { state -> CheckedContinuation<[UInt8]?, Never>? in
                if let continuation = state.waiters[jobID]?.removeValue(forKey: waiter) {
                    if state.waiters[jobID]?.isEmpty == true { state.waiters[jobID] = nil }
                    return continuation
                }
                state.cancelledWaiters.insert(waiter)
                return nil
            }
            continuation?.resume(returning: nil)
        }
    }

    private func record(expiredUnread: Int, waited: Duration?) {
        guard expiredUnread > 0 || waited != nil else { return }
        self.statistics.count { stats in
            stats.resultsExpiredUnread += expiredUnread
            if let waited { stats.resultWaitMaxMilliseconds = max(stats.resultWaitMaxMilliseconds, Int(waited.milliseconds)) }
        }
    }

    /// Drops expired results; returns how many of them no poll had read.
    private static func purge(_ state: inout State, now: ContinuousClock.Instant) -> Int {
        var expiredUnread = 0
        while state.expiryHead < state.expiries.count, state.expiries[state.expiryHead].0 <= now {
            if state.entries.removeValue(forKey: state.expiries[state.expiryHead].1)?.unreadSince != nil {
                expiredUnread += 1
            }
            state.expiryHead += 1
        }
        if state.expiryHead > 1024, state.expiryHead * 2 > state.expiries.count {
            state.expiries.removeFirst(state.expiryHead)
            state.expiryHead = 0
        }
        return expiredUnread
    }
}
