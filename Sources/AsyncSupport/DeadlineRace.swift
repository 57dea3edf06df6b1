import NIOCore
import NIOPosix
import Synchronization

/// Runs work in a task of its own and returns its value, or a fallback as soon as a deadline
/// passes (or the caller is cancelled), cancelling the work then; it never waits for cancelled
/// work to end.
///
/// A task group cannot do this: it waits for all its children, so a child that does not honour
/// cancellation at once (a publish the broker holds back) would hold the answer past the
/// deadline. The work runs in an unstructured task instead, and whoever owns what it uses (the
/// listener's allowances, for one) gives it back from inside the work, when it really ends.
public enum DeadlineRace {
    /// `work()`'s value if it returns within `limit`, else `fallback` at once.
    ///
    /// With an `executor`, the work runs there and the deadline is kept on its event loop (an
    /// unstructured task would otherwise leave the caller's executor for the global pool).
    public static func value<Value: Sendable>(
        within limit: Duration, fallback: Value, on executor: EventLoopExecutor? = nil,
        _ work: @escaping @Sendable () async -> Value
    ) async -> Value {
        let outcome = Outcome<Value>()
        let worker = Task(executorPreference: executor) {
            outcome.settle(await work())
        }
        let loop = executor?.eventLoop ?? NIOSingletons.posixEventLoopGroup.next()
        let timer = loop.scheduleTask(in: TimeAmount(limit)) {
            outcome.settle(fallback)
        }
        let value = await withTaskCancellationHandler {
            await withCheckedContinuation { outcome.wait($0) }
        } onCancel: {
            outcome.settle(fallback)
        }
        timer.cancel()
        worker.cancel()
        return value
    }

    /// The first value settled, handed to one waiter whether it arrives before or after.
    private final class Outcome<Value: Sendable>: Sendable {
        private enum State {
            case pending
            case waiting(CheckedContinuation<Value, Never>)
            case settled(Value)
            case done
        }

        private let state = Mutex<State>(.pending)

        func settle(_ value: Value) {
            let waiter: CheckedContinuation<Value, Never>? = state.withLock { state in
                switch state {
                case .pending:
                    state = .settled(value)
                    return nil
                case .waiting(let continuation):
                    state = .done
                    return continuation
                case .settled, .done:
                    return nil
                }
            }
            waiter?.resume(returning: value)
        }

        func wait(_ continuation: CheckedContinuation<Value, Never>) {
            let value: Value? = state.withLock { state in
                switch state {
                case .pending:
                    state = .waiting(continuation)
                    return nil
                case .settled(let value):
                    state = .done
                    return value
                case .waiting, .done:
                    preconditionFailure("one waiter only")
                }
            }
            if let value { continuation.resume(returning: value) }
        }
    }
}
