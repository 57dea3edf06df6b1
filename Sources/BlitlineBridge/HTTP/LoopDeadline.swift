import NIOCore

/// A deadline on one event loop that moves far more often than it passes, such as a connection's
/// next cut-off, moved for every request: moving it later costs no timer. Its one timer is set
/// again only when the deadline comes sooner than the timer would fire; firing early, the timer
/// sets itself for the deadline then in force, and it runs the deadline's action once that has
/// passed. Used on its loop only.
///
/// The timer is a scheduled callback, not a scheduled task: no promise and future are made for it,
/// and cancelling it fails none (each postback on a fresh connection sets two such timers).
final class LoopDeadline: NIOScheduledCallbackHandler {
    private var due: (at: NIODeadline, action: () -> Void)?
    private var timer: (callback: NIOScheduledCallback, at: NIODeadline)?

    /// Runs `action` on `loop` at `at`, unless set again or cleared before.
    func set(_ at: NIODeadline, on loop: any EventLoop, _ action: @escaping () -> Void) {
        due = (at, action)
        if timer.map({ $0.at > at }) ?? true { schedule(at, on: loop) }
    }

    /// Nothing is due; a timer already set fires and finds nothing.
    func clear() {
        due = nil
    }

    /// Nothing is due, and the timer is cancelled: until it fired, it would hold what the action
    /// refers to (a connection that has closed).
    func stop() {
        due = nil
        timer?.callback.cancel()
        timer = nil
    }

    private func schedule(_ at: NIODeadline, on loop: any EventLoop) {
        timer?.callback.cancel()
        // Fails only on a loop that has shut down, where nothing would run anyway.
        timer = (try? loop.assumeIsolated().scheduleCallback(at: at, handler: self)).map { ($0, at) }
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        fire(on: eventLoop)
    }

    private func fire(on loop: any EventLoop) {
        timer = nil
        guard let due else { return }
        if due.at <= .now() {
            self.due = nil
            due.action()
        } else {
            schedule(due.at, on: loop)
        }
    }
}
