import AsyncSupport
import Dispatch
import NIOPosix
import Testing

/// Tasks that prefer an event loop's executor run on that loop's thread, before and after they
/// wait, and so do their child tasks and the work a deadline race runs for them.
@Suite struct EventLoopExecutorTests {
    let executor = EventLoopExecutor(MultiThreadedEventLoopGroup.singleton.next())

    @Test func aTaskThatPrefersTheLoopRunsOnItBeforeAndAfterWaiting() async throws {
        let onLoop: [Bool] = try await withTaskExecutorPreference(executor) {
            let before = executor.eventLoop.inEventLoop
            try await Task.sleep(for: .milliseconds(10))
            let afterSleeping = executor.eventLoop.inEventLoop
            // Resumed from another thread, as a broker's confirm resumes a publisher.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async { continuation.resume() }
            }
            let afterResuming = executor.eventLoop.inEventLoop
            let child = await withTaskGroup(of: Bool.self) { group in
                group.addTask { executor.eventLoop.inEventLoop }
                return await group.next()!
            }
            return [before, afterSleeping, afterResuming, child]
        }
        #expect(onLoop == [true, true, true, true])
        #expect(!executor.eventLoop.inEventLoop, "the test itself runs on the global pool")
    }

    @Test func theRaceRunsItsWorkOnTheGivenLoop() async {
        let onLoop = await DeadlineRace.value(within: .seconds(30), fallback: false, on: executor) {
            executor.eventLoop.inEventLoop
        }
        #expect(onLoop)
        let elsewhere = await DeadlineRace.value(within: .seconds(30), fallback: true) {
            executor.eventLoop.inEventLoop
        }
        #expect(!elsewhere)
    }
}
