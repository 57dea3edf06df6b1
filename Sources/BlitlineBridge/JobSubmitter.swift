import Blitline
import Synchronization

/// Submits jobs to Blitline. Requests that arrive while `maxInFlight` submissions are under way are
/// combined into batch requests (Blitline takes an array of jobs and answers in order), so a busy
/// bridge makes few, larger requests and a quiet one submits each job at once.
final class JobSubmitter: Sendable {
    private typealias Waiting = (job: BlitlineJob, continuation: CheckedContinuation<SubmitOutcome, Never>)

    private struct State {
        var waiting: [Waiting] = []
        var inFlight = 0
        var running = true
    }

    private let client: BlitlineClient
    private let maxBatch: Int
    private let maxInFlight: Int
    private let state = Mutex(State())
    private let wakeUps: AsyncStream<Void>.Continuation
    private let wakeUpStream: AsyncStream<Void>

    init(client: BlitlineClient, maxBatch: Int = 50, maxInFlight: Int = 8) {
        self.client = client
        self.maxBatch = maxBatch
        self.maxInFlight = maxInFlight
        (wakeUpStream, wakeUps) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Submits one job; the outcome is the job's own even when it travelled in a batch.
    func submit(_ job: BlitlineJob) async -> SubmitOutcome {
        await withCheckedContinuation { continuation in
            let accepted = state.withLock { state in
                guard state.running else { return false }
                state.waiting.append((job, continuation))
                return true
            }
            if accepted {
                wakeUps.yield()
            } else {
                continuation.resume(returning: .transient(SubmitFailure(kind: .cancelled, message: "the bridge is stopping")))
            }
        }
    }

    /// Sends batches until cancelled; then answers whatever still waits as a transient failure.
    func run() async {
        await withDiscardingTaskGroup { group in
            for await _ in wakeUpStream {
                while let batch = nextBatch() {
                    group.addTask {
                        await self.send(batch)
                        self.state.withLock { $0.inFlight -= 1 }
                        self.wakeUps.yield()
                    }
                }
            }
        }
        let abandoned = state.withLock { state in
            state.running = false
            defer { state.waiting.removeAll() }
            return state.waiting
        }
        for entry in abandoned {
            entry.continuation.resume(returning: .transient(SubmitFailure(kind: .cancelled, message: "the bridge is stopping")))
        }
    }

    /// Ends `run` once the batches under way are answered.
    func finish() { wakeUps.finish() }

    private func nextBatch() -> [Waiting]? {
        state.withLock { state in
            guard state.inFlight < maxInFlight, !state.waiting.isEmpty else { return nil }
            let batch = Array(state.waiting.prefix(maxBatch))
            state.waiting.removeFirst(batch.count)
            state.inFlight += 1
            return batch
        }
    }

    private func send(_ batch: [Waiting]) async {
        var outcomes =
            batch.count == 1 ? [await client.submit(batch[0].job)] : await client.submit(batch.map(\.job))
        if batch.count > 1, outcomes.allSatisfy(\.isRejection) {
            // Blitline refused the request as a whole: one bad job must not sink the others, so
            // each is asked about on its own.
            outcomes = []
            for entry in batch { outcomes.append(await client.submit(entry.job)) }
        }
        for (entry, outcome) in zip(batch, outcomes) { entry.continuation.resume(returning: outcome) }
    }
}

extension SubmitOutcome {
    fileprivate var isRejection: Bool {
        if case .rejected = self { return true }
        return false
    }
}
