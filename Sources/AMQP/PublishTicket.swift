import Synchronization

/// One publish's caller, answered exactly once: by the owner thread (confirm, failure) or by the
/// caller's cancellation, whichever comes first; every later answer is ignored.
///
/// The owner thread drops a publish whose ticket is cancelled before it is written, and keeps
/// tracking one already written, so that its confirm is consumed when it comes.
final class PublishTicket: Sendable {
    private enum State {
        case waiting
        case suspended(CheckedContinuation<Void, any Error>)
        case cancelled
        case answered
    }

    /// Identifies the publish to the owner thread (e.g. to drop it from the deferred queue).
    let id: UInt64
    private let state = Mutex(State.waiting)

    init(id: UInt64) { self.id = id }

    /// Attaches the caller's continuation; false (and the caller resumed with
    /// `CancellationError`) if the publish was cancelled already.
    func suspend(_ continuation: CheckedContinuation<Void, any Error>) -> Bool {
        let cancelled = state.withLock { state -> Bool in
            guard case .waiting = state else { return true }
            state = .suspended(continuation)
            return false
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
        return !cancelled
    }

    /// Whether the caller has stopped waiting: the publish must not be written any more.
    var isCancelled: Bool {
        state.withLock { if case .cancelled = $0 { true } else { false } }
    }

    /// Answers the caller unless it was answered or cancelled already.
    func resume(with result: Result<Void, AMQPError>) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            guard case .suspended(let continuation) = state else { return nil }
            state = .answered
            return continuation
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }

    func resume() { resume(with: .success(())) }

    func resume(throwing error: AMQPError) { resume(with: .failure(error)) }

    /// The caller's task was cancelled: answers it with `CancellationError` now. Returns false if
    /// it had been answered already.
    @discardableResult
    func cancel() -> Bool {
        let (cancelled, continuation) = state.withLock { state -> (Bool, CheckedContinuation<Void, any Error>?) in
            switch state {
            case .waiting:
                state = .cancelled
                return (true, nil)
            case .suspended(let continuation):
                state = .cancelled
                return (true, continuation)
            case .cancelled, .answered:
                return (false, nil)
            }
        }
        continuation?.resume(throwing: CancellationError())
        return cancelled
    }
}
