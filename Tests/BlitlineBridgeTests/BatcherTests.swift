import Synchronization
import Testing

@testable import BlitlineBridge

@Suite struct BatcherTests {
    private struct SendFailed: Error {}

    /// Shared state for the closures under test.
    private final class Shared<Value: Sendable>: Sendable {
        let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
        func update<T>(_ body: (inout Value) -> T) -> T { value.withLock { body(&$0) } }
        var current: Value { value.withLock { $0 } }
    }

    @Test func everyItemIsSentOnceAndCallersArriveTogetherShareBatches() async throws {
        let batches = Shared<[[Int]]>([])
        let batcher = Batcher<Int>(maxBatch: 10) { items in
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
        let batcher = Batcher<Int>(maxBatch: 100) { items in
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

    @Test func aBusyBatcherLetsABatchGatherUntilItIsFullAndAQuietOneSendsAtOnce() async throws {
        let batches = Shared<[[Int]]>([])
        // A linger no test run would wait out: only a full batch, or a quiet batcher, ends it.
        let batcher = Batcher<Int>(maxBatch: 3, linger: .seconds(3600)) { items in
            batches.update { $0.append(items) }
            try await Task.sleep(for: .milliseconds(100))  // the broker's confirm
        }
        try await batcher.add(0)  // quiet: sent alone, at once
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await batcher.add(1) }  // still quiet: alone, at once
            try await Task.sleep(for: .milliseconds(20))
            // These two arrive while 1 is on its way and go together: the batcher is busy now.
            group.addTask { try await batcher.add(2) }
            group.addTask { try await batcher.add(3) }
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await batcher.add(4) }
            try await Task.sleep(for: .milliseconds(50))
            group.addTask { try await batcher.add(5) }
            try await Task.sleep(for: .milliseconds(50))
            group.addTask { try await batcher.add(6) }  // fills the batch, which goes at once
        }
        let sent = batches.current.map { $0.sorted() }
        #expect(sent == [[0], [1], [2, 3], [4, 5, 6]])
    }
}
