import AsyncSupport
import NIOCore
import Synchronization

/// Sends items in batches: whatever arrives while a batch is on its way travels together in the
/// next one. A quiet bridge sends each item at once; a busy one sends few, larger batches, and,
/// given a `linger`, lets each gather for that long (for the items announced as coming, or for any).
///
/// No task of its own: the caller whose item starts a batch leads it, and hands the next batch to
/// the first caller still waiting. `add` returns once the batch holding the item was sent, and
/// throws what sending it threw. The send itself runs in a task made for it, which the leader's
/// cancellation (a postback answered 503 at its deadline) does not reach: the batch holds the
/// other callers' items too.
///
/// `JobSubmitter` batches too, but is not built on this: it keeps several batches in flight at
/// once (Blitline answers each in seconds, the broker in milliseconds), bounds a batch by bytes as
/// well as by count, hands each job its own outcome from Blitline's array of answers, and drops a
/// job whose caller was cancelled before it left. Here one batch is on its way at a time, and it
/// succeeds or fails as a whole, which is what one persistent deadline message does.
final class Batcher<Item: Sendable>: Sendable {
    private enum Turn: Sendable {
        case sent
        case failed(any Error)
        case lead
    }

    private struct State {
        var waiting: [(item: Item, turn: CheckedContinuation<Turn, Never>)] = []
        var leading = false
        /// The leader waiting out `linger`, woken early when the batch fills, and which linger
        /// it is (a timer wakes only its own).
        var lingering: (id: Int, wake: CheckedContinuation<Void, Never>)?
        var lingers = 0
        /// Whether the last batch sent held more than one item: callers arrive together.
        var busy = false
        /// Items announced (`expect`) and not added yet: a linger ends once none is left.
        var expected = 0
        /// The batch on its way.
        var sending: Task<Turn, Never>?
        /// `stop()` was called: batches fail at once.
        var stopped = false

        /// The lingering leader to wake, if the batch is full or, when it waits for announced
        /// items only, none is still on its way.
        mutating func lingerEnds(maxBatch: Int, forAnyItem: Bool) -> CheckedContinuation<Void, Never>? {
            guard let lingering, waiting.count >= maxBatch || (expected == 0 && !forAnyItem) else { return nil }
            self.lingering = nil
            return lingering.wake
        }
    }

    private let maxBatch: Int
    private let linger: Duration
    private let lingersForAnyItem: Bool
    private let timers: any EventLoop
    /// Where the sends run: the callers' loop.
    private let executor: EventLoopExecutor
    private let send: @Sendable ([Item]) async throws -> Void
    private let state = Mutex(State())

    /// - Parameters:
    ///   - linger: How long a batch waits for more items before it goes, while the batches before
    ///     it held more than one (a quiet batcher sends each item at once); a full batch goes at once.
    ///   - lingersForAnyItem: Whether a batch lingers for whatever may come; otherwise it lingers
    ///     only while an announced item (`expect`) is still coming.
    ///   - timers: The event loop whose timers end the lingers: the loop the callers run on, so
    ///     that a linger wakes no other thread (a `Task.sleep` is a timer of Swift's global pool,
    ///     and wakes one of its threads to wake the loop; deploy/BENCHMARKS.md, "Lingers timed by
    ///     the event loop").
    init(
        maxBatch: Int, linger: Duration = .zero, lingersForAnyItem: Bool = false, timers: any EventLoop,
        send: @escaping @Sendable ([Item]) async throws -> Void
    ) {
        precondition(maxBatch > 0)
        self.maxBatch = maxBatch
        self.linger = linger
        self.lingersForAnyItem = lingersForAnyItem
        self.timers = timers
        self.executor = EventLoopExecutor(timers)
        self.send = send
    }

    /// Announces an item that will be added soon (or withdrawn): a lingering batch waits for it.
    func expect() {
        state.withLock { $0.expected += 1 }
    }

    /// Withdraws an announced item that will not be added after all.
    func withdraw() {
        state.withLock { state in
            state.expected -= 1
            return state.lingerEnds(maxBatch: maxBatch, forAnyItem: lingersForAnyItem)
        }?.resume()
    }

    /// Adds an item (one announced with `expect`, if `announced`) and returns once its batch is sent.
    func add(_ item: Item, announced: Bool = false) async throws {
        let turn = await withCheckedContinuation { (turn: CheckedContinuation<Turn, Never>) in
            let (lead, wake) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                state.waiting.append((item, turn))
                if announced { state.expected -= 1 }
                if state.leading { return (false, state.lingerEnds(maxBatch: maxBatch, forAnyItem: lingersForAnyItem)) }
                state.leading = true
                return (true, nil)
            }
            wake?.resume()
            if lead { takeTurn() }
        }
        switch turn {
        case .sent: return
        case .failed(let error): throw error
        case .lead: break
        }
        // This caller sends the batch that holds its item (first in line), then passes the lead on.
        // Callers resumed together (one confirm with `multiple`) join first.
        await Task.yield()
        await lingerWhileBusy()
        let batch = state.withLock { state in
            let batch = state.waiting.prefix(maxBatch)
            state.waiting.removeFirst(batch.count)
            state.busy = batch.count > 1
            return batch
        }
        let items = batch.map(\.item)
        let sending = state.withLock { state -> Task<Turn, Never>? in
            guard !state.stopped else { return nil }
            state.sending = Task(executorPreference: executor) { [send] () -> Turn in
                do {
                    try await send(items)
                    return .sent
                } catch {
                    return .failed(error)
                }
            }
            return state.sending
        }
        let outcome = await sending?.value ?? .failed(CancellationError())
        state.withLock { $0.sending = nil }
        for entry in batch.dropFirst() { entry.turn.resume(returning: outcome) }
        takeTurn()
        if case .failed(let error) = outcome { throw error }
    }

    /// Waits `linger`, or until the batch is full or (unless it lingers for any item) no announced
    /// item is still coming, if the batch before held more than one item.
    private func lingerWhileBusy() async {
        guard linger > .zero else { return }
        await withCheckedContinuation { (wake: CheckedContinuation<Void, Never>) in
            let id = state.withLock { state -> Int? in
                guard state.busy, state.waiting.count < maxBatch, state.expected > 0 || lingersForAnyItem else { return nil }
                state.lingers += 1
                state.lingering = (state.lingers, wake)
                return state.lingers
            }
            guard let id else { return wake.resume() }
            // Not cancelled when the linger ends early: it then finds another linger, or none,
            // and wakes no one.
            timers.scheduleTask(in: TimeAmount(linger)) { () -> Void in
                let wake = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard let lingering = state.lingering, lingering.id == id else { return nil }
                    state.lingering = nil
                    return lingering.wake
                }
                wake?.resume()
            }
        }
    }

    /// Cancels the batch on its way and fails those after it at once, with `CancellationError`:
    /// for a session that is being cancelled, whose broker may never confirm (an alarm) and whose
    /// callers would otherwise wait for it.
    func stop() {
        state.withLock { state in
            state.stopped = true
            return state.sending
        }?.cancel()
    }

    /// Items added and not yet taken into a batch (tests).
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    /// Gives the lead to the first caller waiting, or lets it go.
    private func takeTurn() {
        let next = state.withLock { state -> CheckedContinuation<Turn, Never>? in
            guard let first = state.waiting.first else {
                state.leading = false
                return nil
            }
            return first.turn
        }
        next?.resume(returning: .lead)
    }
}
