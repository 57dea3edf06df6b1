import Blitline
import Synchronization

/// The poll cache behind `GET /listen/{job_id}`: results of jobs without a postback, kept for a
/// while, long-poll waiters, and the per-application-id rate limit.
final class PollCache: Sendable {
    private struct Entry {
        var body: [UInt8]?
        var applicationID: String
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// (expiry, job id) in completion order; expiries only grow, so the front expires first.
        var expiries: [(ContinuousClock.Instant, String)] = []
        var expiryHead = 0
        var waiters: [String: [Int: CheckedContinuation<[UInt8]?, Never>]] = [:]
        var cancelledWaiters: Set<Int> = []
        var nextWaiter = 0
        var buckets: [String: TokenBucket] = [:]
    }

    private let state = Mutex(State())
    private let retention: Duration
    private let rate: Double

    init(retention: Duration, ratePerSecond: Double) {
        self.retention = retention
        self.rate = ratePerSecond
    }

    /// Notes a job that will be published here once processed.
    func expect(jobID: String, applicationID: String) {
        self.state.withLock { $0.entries[jobID] = Entry(body: nil, applicationID: applicationID) }
    }

    /// Publishes a finished job's body and wakes its waiters.
    func publish(jobID: String, applicationID: String, body: [UInt8]) {
        let now = ContinuousClock.now
        let waiters = self.state.withLock { state in
            Self.purge(&state, now: now)
            state.entries[jobID] = Entry(body: body, applicationID: applicationID)
            state.expiries.append((now + self.retention, jobID))
            return state.waiters.removeValue(forKey: jobID) ?? [:]
        }
        for waiter in waiters.values { waiter.resume(returning: body) }
    }

    /// Takes a rate token for the application id that owns `jobID` (unknown ids share one bucket).
    func admit(jobID: String) -> Bool {
        let now = ContinuousClock.now
        return self.state.withLock { state in
            let key = state.entries[jobID]?.applicationID ?? ""
            if state.buckets.count > 4096 { state.buckets = state.buckets.filter { !$0.value.isIdle(at: now) } }
            return state.buckets[key, default: TokenBucket(ratePerSecond: self.rate, burst: 1)].tryTake(at: now)
        }
    }

    /// The job's body once published, waiting at most `limit`; `nil` when it is not there in time.
    func wait(jobID: String, limit: Duration) async -> [UInt8]? {
        let ready = self.state.withLock { state -> [UInt8]? in
            Self.purge(&state, now: .now)
            return state.entries[jobID]?.body
        }
        if let ready { return ready }
        let waiter = self.state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskGroup(of: [UInt8]?.self) { group in
            group.addTask { await self.waitIndefinitely(jobID: jobID, waiter: waiter) }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func waitIndefinitely(jobID: String, waiter: Int) async -> [UInt8]? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeWith: [UInt8]?? = self.state.withLock { state in
                    if state.cancelledWaiters.remove(waiter) != nil { return .some(nil) }
                    if let body = state.entries[jobID]?.body { return .some(body) }
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

    private static func purge(_ state: inout State, now: ContinuousClock.Instant) {
        while state.expiryHead < state.expiries.count, state.expiries[state.expiryHead].0 <= now {
            state.entries[state.expiries[state.expiryHead].1] = nil
            state.expiryHead += 1
        }
        if state.expiryHead > 1024, state.expiryHead * 2 > state.expiries.count {
            state.expiries.removeFirst(state.expiryHead)
            state.expiryHead = 0
        }
    }
}
