import AsyncSupport
import Synchronization
import Testing

@Suite struct BudgetTests {
    @Test func neverMoreThanTheCapacityIsWorkedOnAtOnceAndEveryoneGetsATurn() async throws {
        final class InUse: Sendable {
            let units = Mutex((now: 0, peak: 0))
            func add(_ delta: Int) { units.withLock { $0.now += delta; $0.peak = max($0.peak, $0.now) } }
        }
        let budget = Budget(capacity: 10)
        let inUse = InUse()
        try await withThrowingDiscardingTaskGroup { group in
            for units in [6, 6, 3, 50, 1, 4, 9] {
                group.addTask {
                    try await budget.spending(units) {
                        inUse.add(min(units, 10))
                        try await Task.sleep(for: .milliseconds(5))
                        inUse.add(-min(units, 10))
                    }
                }
            }
        }
        #expect(inUse.units.withLock { $0.peak } <= 10)
        #expect(inUse.units.withLock { $0.now } == 0)
    }

    @Test func aCancelledWaiterLeavesAndDoesNotHoldOthersBack() async throws {
        let budget = Budget(capacity: 10)
        let (holding, held) = AsyncStream<Void>.makeStream()
        let (released, release) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await budget.spending(8) {
                held.yield()
                for await _ in released { break }
            }
        }
        for await _ in holding { break }
        let big = Task { try await budget.spending(10) {} }
        try await Task.sleep(for: .milliseconds(20))
        big.cancel()
        await #expect(throws: CancellationError.self) { try await big.value }
        // The big one left the queue: a small one fits beside the holder at once.
        try await budget.spending(2) {}
        release.yield()
        try await holder.value
    }
}
