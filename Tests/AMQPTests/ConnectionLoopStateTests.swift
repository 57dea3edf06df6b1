@testable import AMQP
import Testing

/// The connection's shared state on its own, without a socket: lifecycle, commands, blocked
/// publishing, waiters. (`#expect` cannot hold a mutating call: each event's action is taken first.)
@Suite struct ConnectionLoopStateTests {
    typealias State = ConnectionLoop.State

    static let forced = AMQPError(.connectionClosed, replyCode: 320, "CONNECTION_FORCED")

    static func command() -> ConnectionLoop.Command {
        ConnectionLoop.Command(run: { _ in }, fail: { _ in })
    }

    static func publish(_ id: UInt64) -> ConnectionLoop.Command {
        ConnectionLoop.Command(publishID: id, run: { _ in }, fail: { _ in })
    }

    static func open() -> State {
        var state = State()
        state.opened()
        return state
    }

    @Test func goesFromOpeningThroughClosingToClosedKeepingTheFirstReason() {
        var state = State()
        #expect(state.lifecycle == .opening)
        state.opened()
        #expect(state.lifecycle == .open)
        #expect(state.closingReason == nil && state.closeReason == nil)

        state.closeRequested(Self.forced)
        state.closeRequested(.closedByApplication)
        #expect(state.lifecycle == .closing(Self.forced))
        #expect(state.closingReason == Self.forced)
        #expect(state.closeReason == nil, "the reason is public only once the connection is torn down")

        _ = state.tornDown(Self.forced)
        #expect(state.lifecycle == .closed(Self.forced))
        #expect(state.closeReason == Self.forced)
        state.closeRequested(.closedByApplication)
        #expect(state.closeReason == Self.forced)
    }

    @Test func aConnectionThatFailsToOpenIsClosed() {
        var state = State()
        let refused = AMQPError(.loginRefused, replyCode: 403, "ACCESS_REFUSED")
        _ = state.tornDown(refused)
        #expect(state.closeReason == refused)
        let posted = state.commandPosted(Self.command())
        #expect(posted == .fail(refused))
    }

    @Test func aCommandWakesTheOwnerOnlyWhenItSleeps() {
        var state = Self.open()
        var posted = state.commandPosted(Self.command())
        #expect(posted == .none)
        var sleeps = state.ownerWillSleep()
        #expect(!sleeps, "the owner must not sleep with a command waiting")
        #expect(state.takeCommands().count == 1)

        sleeps = state.ownerWillSleep()
        #expect(sleeps)
        posted = state.commandPosted(Self.command())
        #expect(posted == .wakeOwner)
        posted = state.commandPosted(Self.command())
        #expect(posted == .none, "one wake-up is enough")
        #expect(state.takeCommands().count == 2)

        sleeps = state.ownerWillSleep()
        #expect(sleeps)
        state.ownerWoke()
        posted = state.commandPosted(Self.command())
        #expect(posted == .none)
    }

    @Test func commandsRunUntilClosingIsDecidedThenFailWithItsReason() {
        var state = Self.open()
        var actions = [state.commandTaken(Self.command()), state.commandTaken(Self.publish(1))]
        #expect(actions == [.run, .run])

        state.closeRequested(Self.forced)
        actions = [state.commandTaken(Self.command()), state.commandTaken(Self.publish(2))]
        #expect(actions == [.fail(Self.forced), .fail(Self.forced)])
        var posted = state.commandPosted(Self.command())
        #expect(posted == .none, "taken by the teardown, which fails it")

        _ = state.tornDown(Self.forced)
        posted = state.commandPosted(Self.command())
        #expect(posted == .fail(Self.forced))
    }

    @Test func publishesWaitWhileTheBrokerBlocksAndGoOutInOrderAfter() {
        var state = Self.open()
        _ = state.blockedChanged(true)
        #expect(state.isBlocked)
        let actions = [
            state.commandTaken(Self.publish(1)), state.commandTaken(Self.command()),
            state.commandTaken(Self.publish(2)),
        ]
        #expect(actions == [.deferred, .run, .deferred], "only publishes wait")
        #expect(state.releasedPublishes().isEmpty)

        _ = state.blockedChanged(false)
        #expect(!state.isBlocked)
        let later = state.commandTaken(Self.publish(3))
        #expect(later == .deferred, "a later publish must not overtake those held back")
        #expect(state.releasedPublishes().map(\.publishID) == [1, 2, 3])
        #expect(state.releasedPublishes().isEmpty)
        let next = state.commandTaken(Self.publish(4))
        #expect(next == .run)
    }

    @Test func aCancelledPublishHeldBackIsNeverReleased() {
        var state = Self.open()
        _ = state.blockedChanged(true)
        for id: UInt64 in 1...3 { _ = state.commandTaken(Self.publish(id)) }
        state.publishCancelled(2)
        _ = state.blockedChanged(false)
        #expect(state.releasedPublishes().map(\.publishID) == [1, 3])
    }

    @Test func theTeardownFailsHeldBackPublishesThenPostedCommands() {
        var state = Self.open()
        _ = state.blockedChanged(true)
        _ = state.commandTaken(Self.publish(1))
        _ = state.commandPosted(Self.publish(2))
        state.closeRequested(Self.forced)
        let teardown = state.tornDown(Self.forced)
        #expect(teardown.commandsToFail.map(\.publishID) == [1, 2])
        #expect(state.releasedPublishes().isEmpty && state.takeCommands().isEmpty)
        #expect(state.isBlocked, "the broker's last word stays")
    }

    @Test func blockedWatchersSeeTheCurrentStateThenEveryChangeUntilTheClose() {
        var state = Self.open()
        _ = state.blockedChanged(true)
        let (_, first) = AsyncStream.makeStream(of: Bool.self)
        let (_, second) = AsyncStream.makeStream(of: Bool.self)
        let firstWatch = state.blockedWatchStarted(first)
        let secondWatch = state.blockedWatchStarted(second)
        guard case .watch(id: let firstID, current: true) = firstWatch,
            case .watch(id: let secondID, current: true) = secondWatch
        else {
            Issue.record("a watcher did not start with the current state: \(firstWatch), \(secondWatch)")
            return
        }
        #expect(firstID != secondID)
        #expect(state.blockedChanged(false).count == 2)
        state.blockedWatchEnded(firstID)
        #expect(state.blockedChanged(true).count == 1)

        #expect(state.tornDown(Self.forced).blockedWatchers.count == 1)
        let (_, late) = AsyncStream.makeStream(of: Bool.self)
        let lateWatch = state.blockedWatchStarted(late)
        #expect(lateWatch == .finish)
        #expect(state.blockedChanged(false).isEmpty)
    }

    @Test func closeWaitersAreResumedWithTheReasonOfTheTeardown() async {
        var state = Self.open()
        let reason = await withCheckedContinuation { continuation in
            let answer = state.closeWaitStarted(state.makeID(), continuation)
            #expect(answer == nil)
            state.closeRequested(Self.forced)
            let teardown = state.tornDown(Self.forced)
            #expect(teardown.closeWaiters.count == 1)
            for waiter in teardown.closeWaiters { waiter.resume(returning: Self.forced) }
        }
        #expect(reason == Self.forced)
        let late = await withCheckedContinuation { continuation in
            if let reason = state.closeWaitStarted(state.makeID(), continuation) {
                continuation.resume(returning: reason)
            }
        }
        #expect(late == Self.forced, "a wait that starts after the close returns at once")
    }

    @Test func aCancelledCloseWaitReturnsAtOnceWhetherItStartedOrNot() async {
        var state = Self.open()
        let waiting = state.makeID()
        let reason = await withCheckedContinuation { continuation in
            let answer = state.closeWaitStarted(waiting, continuation)
            #expect(answer == nil)
            state.closeWaitCancelled(waiting)?.resume(returning: State.stoppedWaiting)
        }
        #expect(reason == State.stoppedWaiting)

        let notYetWaiting = state.makeID()
        let cancelled = state.closeWaitCancelled(notYetWaiting)
        #expect(cancelled == nil)
        let early = await withCheckedContinuation { continuation in
            if let reason = state.closeWaitStarted(notYetWaiting, continuation) {
                continuation.resume(returning: reason)
            }
        }
        #expect(early == State.stoppedWaiting)
        #expect(state.tornDown(Self.forced).closeWaiters.isEmpty)
    }
}
