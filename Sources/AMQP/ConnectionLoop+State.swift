extension ConnectionLoop {
    /// What a connection's threads share, as a plain value: where the connection is in its life
    /// and why it closed, who waits for that, the commands posted to the owner thread, and whether
    /// the broker blocks publishing (with the publishes held back meanwhile).
    ///
    /// No I/O and no locking here: the loop keeps the value in a mutex, calls one event at a time
    /// and carries out the action the event returns (fail a command, wake the owner thread, resume
    /// waiters, yield to watchers). Every decision about these is made here, once.
    struct State {
        enum Lifecycle: Hashable {
            /// The owner thread is connecting and logging in.
            case opening
            case open
            /// Closing was decided (by the application, the broker, a failed call, the heartbeat
            /// check): the owner thread tears the connection down before its next wait.
            case closing(AMQPError)
            /// Torn down, or being torn down: everything posted from now on fails with the reason.
            case closed(AMQPError)
        }

        private(set) var lifecycle = Lifecycle.opening
        /// Whether the broker blocks publishing (`connection.blocked` until `connection.unblocked`).
        /// Stays as it was once the connection closes.
        private(set) var isBlocked = false
        private var commands: [Command] = []
        /// The owner thread is waiting in `poll` and must be woken for new commands.
        private var ownerSleeps = false
        /// Publishes held back while the broker blocks publishing, in the order they were posted.
        private var deferredPublishes: [Command] = []
        private var closeWaiters: [Int: CheckedContinuation<AMQPError, Never>] = [:]
        /// Waits cancelled before they were registered.
        private var abandonedWaits: Set<Int> = []
        private var blockedWatchers: [Int: AsyncStream<Bool>.Continuation] = [:]
        private var lastID = 0

        /// Why the connection closed, once it has.
        var closeReason: AMQPError? {
            if case .closed(let reason) = lifecycle { reason } else { nil }
        }

        /// Why the connection is closing or closed; nil while it opens or is open.
        var closingReason: AMQPError? {
            switch lifecycle {
            case .opening, .open: nil
            case .closing(let reason), .closed(let reason): reason
            }
        }

        // MARK: Any thread

        enum PostAction: Equatable {
            case none
            /// The owner thread sleeps in `poll`: write to its wake-up pipe.
            case wakeOwner
            /// The connection is closed: fail the command with this at once.
            case fail(AMQPError)
        }

        mutating func commandPosted(_ command: Command) -> PostAction {
            if let reason = closeReason { return .fail(reason) }
            commands.append(command)
            guard ownerSleeps else { return .none }
            ownerSleeps = false
            return .wakeOwner
        }

        /// An id for a close waiter or a blocked watcher.
        mutating func makeID() -> Int {
            lastID += 1
            return lastID
        }

        /// A task waits for the connection to close. Returns what to resume it with at once, or
        /// nil if it waits (its continuation is kept).
        mutating func closeWaitStarted(
            _ id: Int, _ continuation: CheckedContinuation<AMQPError, Never>
        ) -> AMQPError? {
            if let reason = closeReason { return reason }
            if abandonedWaits.remove(id) != nil { return Self.stoppedWaiting }
            closeWaiters[id] = continuation
            return nil
        }

        /// A task stopped waiting for the close. Returns its continuation if it was waiting: resume
        /// it with `stoppedWaiting`.
        mutating func closeWaitCancelled(_ id: Int) -> CheckedContinuation<AMQPError, Never>? {
            let waiter = closeWaiters.removeValue(forKey: id)
            if waiter == nil, closeReason == nil { abandonedWaits.insert(id) }
            return waiter
        }

        static let stoppedWaiting = AMQPError(.connectionClosed, "stopped waiting for the connection to close")

        enum WatchAction: Equatable {
            /// Watching under `id`: yield `current` to the watcher first.
            case watch(id: Int, current: Bool)
            /// The connection is closed: yield `false` and finish the watcher.
            case finish
        }

        mutating func blockedWatchStarted(_ continuation: AsyncStream<Bool>.Continuation) -> WatchAction {
            guard closeReason == nil else { return .finish }
            let id = makeID()
            blockedWatchers[id] = continuation
            return .watch(id: id, current: isBlocked)
        }

        mutating func blockedWatchEnded(_ id: Int) {
            blockedWatchers.removeValue(forKey: id)
        }

        // MARK: Owner thread

        mutating func opened() {
            if case .opening = lifecycle { lifecycle = .open }
        }

        /// Closing is decided for `reason`; the first reason stays.
        mutating func closeRequested(_ reason: AMQPError) {
            switch lifecycle {
            case .opening, .open: lifecycle = .closing(reason)
            case .closing, .closed: break
            }
        }

        /// The publishes held back, once the broker no longer blocks publishing: run them first,
        /// in order.
        mutating func releasedPublishes() -> [Command] {
            guard !isBlocked, !deferredPublishes.isEmpty else { return [] }
            defer { deferredPublishes.removeAll() }
            return deferredPublishes
        }

        /// The commands posted since the last call, in order.
        mutating func takeCommands() -> [Command] {
            defer { commands.removeAll(keepingCapacity: true) }
            return commands
        }

        enum CommandAction: Equatable {
            case run
            /// Held back until the broker unblocks publishing (or the connection closes).
            case deferred
            case fail(AMQPError)
        }

        /// The owner thread is about to carry out `command`.
        mutating func commandTaken(_ command: Command) -> CommandAction {
            if let reason = closingReason { return .fail(reason) }
            // A publish also waits behind earlier ones still held back, so that order is kept.
            guard command.isPublish, isBlocked || !deferredPublishes.isEmpty else { return .run }
            deferredPublishes.append(command)
            return .deferred
        }

        /// A publish's caller stopped waiting: if it is held back, it is forgotten, never written.
        mutating func publishCancelled(_ publishID: UInt64) {
            deferredPublishes.removeAll { $0.publishID == publishID }
        }

        /// The broker blocked or unblocked publishing. Returns the watchers to tell.
        mutating func blockedChanged(_ blocked: Bool) -> [AsyncStream<Bool>.Continuation] {
            isBlocked = blocked
            return Array(blockedWatchers.values)
        }

        /// The owner thread has nothing left to read. Returns whether it may sleep until woken (no
        /// command is waiting); from now on, a posted command wakes it.
        mutating func ownerWillSleep() -> Bool {
            ownerSleeps = commands.isEmpty
            return ownerSleeps
        }

        mutating func ownerWoke() {
            ownerSleeps = false
        }

        /// What to fail, resume and finish when the connection is torn down.
        struct TeardownAction {
            /// Held-back publishes first, then the commands not yet taken.
            var commandsToFail: [Command]
            var closeWaiters: [CheckedContinuation<AMQPError, Never>]
            var blockedWatchers: [AsyncStream<Bool>.Continuation]
        }

        /// The owner thread tears the connection down for `reason`: from now on it is closed.
        mutating func tornDown(_ reason: AMQPError) -> TeardownAction {
            if closeReason == nil { lifecycle = .closed(reason) }
            defer {
                deferredPublishes.removeAll()
                commands.removeAll()
                closeWaiters.removeAll()
                abandonedWaits.removeAll()
                blockedWatchers.removeAll()
            }
            return TeardownAction(
                commandsToFail: deferredPublishes + commands, closeWaiters: Array(closeWaiters.values),
                blockedWatchers: Array(blockedWatchers.values))
        }
    }
}
