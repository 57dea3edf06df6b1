import DequeModule
import Synchronization

/// Bounds how many bytes of requests are worked on at once. A request is parsed into a JSON tree,
/// prepared, encoded and sent several times over; with `PREFETCH` requests of `MAX_REQUEST_BYTES`
/// in hand, doing that for all of them at once would multiply the memory they take. Requests wait
/// their turn in arrival order; one larger than the whole budget waits until it has it all.
final class ByteBudget: Sendable {
    private struct Waiter {
        let id: Int
        let bytes: Int
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var available: Int
        var waiting: Deque<Waiter> = []
        var nextID = 0
    }

    let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.state = Mutex(State(available: capacity))
    }

    /// Runs `body` once `bytes` (at most the capacity) are free, and frees them after it.
    /// Throws `CancellationError` if the task is cancelled while it waits.
    func withBytes<T>(_ bytes: Int, _ body: () async throws -> T) async throws -> T {
        let bytes = min(max(bytes, 1), capacity)
        try await acquire(bytes)
        defer { release(bytes) }
        return try await body()
    }

    private func acquire(_ bytes: Int) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let granted = state.withLock { state -> Bool? in
                    if Task.isCancelled { return nil }
                    if state.waiting.isEmpty, state.available >= bytes {
                        state.available -= bytes
                        return true
                    }
                    state.waiting.append(Waiter(id: id, bytes: bytes, continuation: continuation))
                    return false
                }
                switch granted {
                case true?: continuation.resume()
                case nil: continuation.resume(throwing: CancellationError())
                case false?: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiting.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
            // A waiter removed from the head may have been holding others back.
            resumeWaiters()
        }
    }

    private func release(_ bytes: Int) {
        state.withLock { $0.available += bytes }
        resumeWaiters()
    }

    private func resumeWaiters() {
        let ready = state.withLock { state -> [Waiter] in
            var ready: [Waiter] = []
            while let first = state.waiting.first, state.available >= first.bytes {
                state.available -= first.bytes
                ready.append(state.waiting.removeFirst())
            }
            return ready
        }
        for waiter in ready { waiter.continuation.resume() }
    }
}
