import AsyncSupport
import Dispatch
import Synchronization
import Testing
import TestSupport

/// Work raced against a deadline: the answer comes at the deadline even when the work ignores
/// cancellation, and work that ends in time gives its value.
@Suite struct DeadlineRaceTests {
    @Test func theRaceAnswersAtTheDeadlineWithoutWaitingForTheWork() async {
        let ended = Mutex(false)
        let value = await DeadlineRace.value(within: .milliseconds(200), fallback: "late") {
            // Work that ignores cancellation, as a publish the broker holds back, for far longer
            // than the deadline: the race must answer without it, however slow the machine.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().asyncAfter(deadline: .now() + 60) { continuation.resume() }
            }
            ended.withLock { $0 = true }
            return "done"
        }
        #expect(value == "late")
        #expect(!ended.withLock { $0 }, "the race waited for the work")
    }

    @Test func theRaceReturnsWorkThatEndsInTimeAndCancelsWorkThatDoesNot() async {
        // The deadline is far: work that returns at once still needs a thread of the global pool.
        #expect(await DeadlineRace.value(within: .seconds(60), fallback: 0) { 42 } == 42)
        let cancelled = Mutex(false)
        _ = await DeadlineRace.value(within: .milliseconds(100), fallback: 0) {
            try? await Task.sleep(for: .seconds(5))
            cancelled.withLock { $0 = Task.isCancelled }
            return 1
        }
        #expect(await eventually(timeout: .seconds(10)) { cancelled.withLock { $0 } })
    }

    @Test func aCancelledCallerGetsTheFallbackAtOnce() async {
        let task = Task {
            await DeadlineRace.value(within: .seconds(60), fallback: "fallback") {
                try? await Task.sleep(for: .seconds(60))
                return "work"
            }
        }
        task.cancel()
        #expect(await task.value == "fallback")
    }
}
