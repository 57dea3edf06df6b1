import DequeModule
import Synchronization

/// Tasks that wait their turn in arrival order, under one lock with the state that decides when
/// their turn comes. Each waits until its owner takes it out of the line and answers it, or until
/// its task is cancelled: then it leaves the line at once with the owner's answer for that case.
///
/// This is the one subtle part of parking tasks on continuations, written once: a task cancelled
/// before it would park, while it is parked, or just as its owner takes it out, is answered
/// exactly once and never left behind.
///
/// Inlinable, so that each owner's code is specialized for its types: used unspecialized from
/// another module, every copy of a `Waiter` went through value witnesses and a look-up of the
/// type's metadata in the runtime's cache, about 15 look-ups per request the bridge handles
/// (deploy/BENCHMARKS.md, "Fewer look-ups of type metadata").
public final class WaitingLine<State: Sendable, Element: Sendable, Value: Sendable>: Sendable {
    /// A parked task: what it waits with, and its answer, given once, outside the lock.
    public struct Waiter: Sendable {
        public let element: Element
        @usableFromInline let id: Int
        @usableFromInline let continuation: CheckedContinuation<Value, Never>

        @usableFromInline init(element: Element, id: Int, continuation: CheckedContinuation<Value, Never>) {
            self.element = element
            self.id = id
            self.continuation = continuation
        }

        @inlinable public func resume(returning value: Value) {
            continuation.resume(returning: value)
        }
    }

    /// The parked tasks in arrival order, as the owner sees them under the lock.
    public struct Line: Sendable {
        @usableFromInline var waiters: Deque<Waiter> = []
        @usableFromInline var nextID = 0

        @inlinable public var isEmpty: Bool { waiters.isEmpty }
        @inlinable public var count: Int { waiters.count }

        /// The element of the `position`th waiter from the front.
        @inlinable public subscript(position: Int) -> Element { waiters[position].element }

        /// Takes the first `count` waiters out of the line, for the owner to answer.
        @inlinable public mutating func removeFirst(_ count: Int) -> [Waiter] {
            let taken = Array(waiters.prefix(count))
            waiters.removeFirst(count)
            return taken
        }

        /// Takes every waiter out of the line, for the owner to answer.
        @inlinable public mutating func removeAll() -> [Waiter] {
            defer { waiters.removeAll() }
            return Array(waiters)
        }
    }

    @usableFromInline let lock: Mutex<(state: State, line: Line)>

    public init(_ state: State) {
        lock = Mutex((state, Line()))
    }

    /// Answers at once with `cancelled` if the task is cancelled, or with `decide`'s answer when it
    /// has one; otherwise parks `element` at the end of the line, calls `parked` (outside the
    /// lock), and waits until the owner answers it or the task is cancelled.
    ///
    /// An answer at once takes no continuation and no cancellation handler (each request the
    /// bridge handles asks `Budget` once). So `decide` may be asked twice, the second time just
    /// before parking: it must change the state only when it answers.
    @inlinable public func wait(
        _ element: Element, cancelled: Value, decide: (inout State, Line) -> Value? = { _, _ in nil },
        parked: () -> Void = {}
    ) async -> Value {
        let first = lock.withLock { locked -> (answer: Value?, id: Int) in
            if Task.isCancelled { return (cancelled, 0) }
            if let answer = decide(&locked.state, locked.line) { return (answer, 0) }
            locked.line.nextID += 1
            return (nil, locked.line.nextID)
        }
        if let answer = first.answer { return answer }
        let id = first.id
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let answer = lock.withLock { locked -> Value? in
                    if Task.isCancelled { return cancelled }
                    if let answer = decide(&locked.state, locked.line) { return answer }
                    locked.line.waiters.append(Waiter(element: element, id: id, continuation: continuation))
                    return nil
                }
                if let answer {
                    continuation.resume(returning: answer)
                } else {
                    parked()
                }
            }
        } onCancel: {
            let waiter = lock.withLock { locked -> Waiter? in
                guard let index = locked.line.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return locked.line.waiters.remove(at: index)
            }
            waiter?.resume(returning: cancelled)
        }
    }

    /// Runs `body` with the state and the line under the lock. Whoever `body` takes out of the line
    /// must be answered, after `withLock` returns.
    @inlinable public func withLock<Result: Sendable>(_ body: (inout State, inout Line) -> Result) -> Result {
        lock.withLock { locked in body(&locked.state, &locked.line) }
    }
}
