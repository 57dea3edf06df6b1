import NIOPosix
import Synchronization
import TestSupport
import Testing

@testable import BlitlineBridge

@Suite struct BatcherTests {
    private struct SendFailed: Error {}
    /// Whose timers end the lingers, as the bridge's event loop does.
    private static let loop = MultiThreadedEventLoopGroup.singleton.next()

    /// Shared state for the closures under test.
    private final class Shared<Value: Sendable>: Sendable {
        let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
        func update<T>(_ body: (inout Value) -> T) -> T { value.withLock { body(&$0) } }
        var current: Value { value.withLock { $0 } }
    }

    @Test func everyItemIsSentOnceAndCallersArriveTogetherShareBatches() async throws {
        let batches = Shared<[[Int]]>([])
        let batcher = Batcher<Int>(maxBatch: 10, timers: Self.loop) { items in
            batches.update { $0.append(items) }
            try await Task.sleep(for: .milliseconds(5))  // the broker's confirm
        }
        try await withThrowingDiscardingTaskGroup { group in
            for item in 0..<200 { group.addTask { try await batcher.add(item) } }
        }
        let sent = batches.current
        #expect(sent.flatMap { $0 }.sorted() == Array(0..<200))
        #expect(sent.allSatisfy { $0.count <= 10 })
        #expect(sent.count < 100, "200 callers at once made \(sent.count) batches")
    }

    @Test func aFailedSendFailsEveryCallerInItsBatchAndTheNextBatchStillGoes() async throws {
        let batches = Shared<[[Int]]>([])
        let batcher = Batcher<Int>(maxBatch: 100, timers: Self.loop) { items in
            let first = batches.update { batches in
                batches.append(items)
                return batches.count == 1
            }
            try await Task.sleep(for: .milliseconds(20))  // the others gather meanwhile
            if first { throw SendFailed() }
        }
        let results = Shared<[Int: Bool]>([:])
        await withDiscardingTaskGroup { group in
            for item in 0..<20 {
                group.addTask {
                    let sent = (try? await batcher.add(item)) != nil
                    results.update { $0[item] = sent }
                }
            }
        }
        let failedBatch = Set(batches.current.first ?? [])
        let outcome = results.current
        #expect(outcome.count == 20)
        try await batcher.add(20)  // a batch after the failure goes
        for item in 0..<20 {
            #expect(outcome[item] == !failedBatch.contains(item), "item \(item): sent \(String(describing: outcome[item]))")
        }
    }

    /// A postback past the listener's deadline cancels its task, which may be leading a batch of
    /// outcome records: the others' records in that batch still go, and no one else fails.
    @Test func aCallerCancelledWhileItsBatchIsOnItsWayFailsNoOneElseInIt() async throws {
        let batches = Shared<[[Int]]>([])
        let gate = Shared<CheckedContinuation<Void, Never>?>(nil)
        let batcher = Batcher<Int>(maxBatch: 10, timers: Self.loop) { items in
            let first = batches.update { batches in
                batches.append(items)
                return batches.count == 1
            }
            if first {
                await withCheckedContinuation { continuation in gate.update { $0 = continuation } }
            } else {
                // A publish waiting for the broker's confirm throws once its task is cancelled.
                try await Task.sleep(for: .milliseconds(300))
            }
        }
        let zero = Task { try await batcher.add(0) }  // alone, held on its way
        #expect(await eventually { gate.current != nil })
        let callers = (1...4).map { item in Task { try await batcher.add(item) } }
        #expect(await eventually { batcher.waitingCount == 4 })
        gate.update { $0 }?.resume()  // 1 – 4 go together, led by the first of them
        #expect(await eventually { batches.current.count == 2 })
        try await zero.value
        let batch = try #require(batches.current.last)
        #expect(batch.sorted() == [1, 2, 3, 4])
        callers[batch[0] - 1].cancel()
        for item in batch {
            let result = await callers[item - 1].result
            #expect(throws: Never.self, "item \(item)") { try result.get() }
        }
        try await batcher.add(5)  // and the batcher goes on
        #expect(batches.current.count == 3)
    }

    /// A session cancelled while its broker confirms nothing (an alarm): the batch on its way and
    /// those after it fail at once rather than hold their callers.
    @Test func aStoppedBatcherFailsTheBatchOnItsWayAndEveryOneAfterIt() async throws {
        let sending = Shared(false)
        let batcher = Batcher<Int>(maxBatch: 10, timers: Self.loop) { _ in
            sending.update { $0 = true }
            try await Task.sleep(for: .seconds(3600))  // a confirm that never comes
        }
        let held = Task { try await batcher.add(0) }
        #expect(await eventually { sending.current })
        batcher.stop()
        await #expect(throws: CancellationError.self) { try await held.value }
        await #expect(throws: CancellationError.self) { try await batcher.add(1) }
    }

    @Test func aBusyBatcherLetsABatchGatherForAnnouncedItemsAndAQuietOneSendsAtOnce() async throws {
        let batches = Shared<[[Int]]>([])
        let gate = Shared<CheckedContinuation<Void, Never>?>(nil)
        // A linger no test run would wait out: only a full batch, or a quiet batcher, ends it.
        let batcher = Batcher<Int>(maxBatch: 3, linger: .seconds(3600), timers: Self.loop) { items in
            batches.update { $0.append(items) }
            if items == [1] { await withCheckedContinuation { continuation in gate.update { $0 = continuation } } }
        }
        try await batcher.add(0)  // quiet: sent alone, at once
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await batcher.add(1) }  // still quiet: alone, at once; held on its way
            #expect(await eventually { gate.current != nil })
            // These two wait while 1 is on its way, then go together: the batcher is busy now.
            group.addTask { try await batcher.add(2) }
            group.addTask { try await batcher.add(3) }
            #expect(await eventually { batcher.waitingCount == 2 })
            gate.update { $0 }?.resume()
        }
        // Announced items keep a busy batch waiting for them, until it is full…
        for _ in 4...6 { batcher.expect() }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await batcher.add(4, announced: true) }
            #expect(await eventually { batcher.waitingCount == 1 })
            group.addTask { try await batcher.add(5, announced: true) }
            #expect(await eventually { batcher.waitingCount == 2 })
            group.addTask { try await batcher.add(6, announced: true) }  // fills the batch, which goes at once
        }
        // …or until none is still coming.
        for _ in 7...8 { batcher.expect() }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await batcher.add(7, announced: true) }
            #expect(await eventually { batcher.waitingCount == 1 })
            batcher.withdraw()  // 8 will not come after all: 7 goes
        }
        let sent = batches.current.map { $0.sorted() }
        #expect(sent == [[0], [1], [2, 3], [4, 5, 6], [7]])
    }

    @Test func aBusyBatcherLingeringForAnyItemGathersUnannouncedItemsUntilItIsFull() async throws {
        // A linger no test run would wait out: only a full batch ends it.
        let (batcher, batches) = try await busyBatcher(maxBatch: 3, linger: .seconds(3600), lingersForAnyItem: true)
        // Nothing was announced, and the batch still waits for more, until it is full.
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await batcher.add(3) }
            #expect(await eventually { batcher.waitingCount == 1 })
            group.addTask { try await batcher.add(4) }
            #expect(await eventually { batcher.waitingCount == 2 })
            group.addTask { try await batcher.add(5) }
        }
        #expect(batches.current.map { $0.sorted() } == [[0], [1, 2], [3, 4, 5]])
    }

    @Test func aLingeringBatchGoesWhenItsLingerEndsThoughTheItemItWaitsForNeverComes() async throws {
        let (batcher, batches) = try await busyBatcher(maxBatch: 10, linger: .milliseconds(50))
        batcher.expect()  // announced, and never added: only the linger's end sends 3
        // In a task of its own, so that a linger that never ends fails the test rather than hangs it.
        let three = Task { try await batcher.add(3) }
        #expect(await eventually { batches.current.count == 3 }, "the lingering batch never went")
        #expect(batches.current.map { $0.sorted() } == [[0], [1, 2], [3]])
        if batches.current.count == 3 { try await three.value }
    }

    /// A batcher that records its batches, after 0 went alone and was held on its way until 1 and
    /// 2 waited: they went together, and the batcher is busy.
    private func busyBatcher(
        maxBatch: Int, linger: Duration, lingersForAnyItem: Bool = false
    ) async throws -> (Batcher<Int>, Shared<[[Int]]>) {
        let batches = Shared<[[Int]]>([])
        let gate = Shared<CheckedContinuation<Void, Never>?>(nil)
        let batcher = Batcher<Int>(
            maxBatch: maxBatch, linger: linger, lingersForAnyItem: lingersForAnyItem, timers: Self.loop
        ) { items in
            batches.update { $0.append(items) }
            if items == [0] { await withCheckedContinuation { continuation in gate.update { $0 = continuation } } }
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await batcher.add(0) }  // quiet: alone, at once; held on its way
            #expect(await eventually { gate.current != nil })
            group.addTask { try await batcher.add(1) }
            group.addTask { try await batcher.add(2) }
            #expect(await eventually { batcher.waitingCount == 2 })
            gate.update { $0 }?.resume()  // 1 and 2 go together: the batcher is busy now
        }
        return (batcher, batches)
    }
}
