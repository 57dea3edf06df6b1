import Blitline
import Synchronization

/// Submits jobs to Blitline. Requests that arrive while `maxInFlight` submissions are under way are
/// combined into batch requests (Blitline takes an array of jobs and answers in order), so a busy
/// bridge makes few, larger requests and a quiet one submits each job at once. A batch holds at
/// most `maxBatch` jobs and `maxBatchBytes` of their JSON (a larger job goes alone): each request
/// is encoded several times over on its way out, so large jobs must not travel fifty at a time.
///
/// A caller cancelled while its job still waits for a batch gets `.transient(.cancelled)` at once
/// and its job is never sent: a session that ends starts no new submission.
final class JobSubmitter: Sendable {
    private struct Waiting {
        let id: Int
        let job: BlitlineJob
        let bytes: Int
        let continuation: CheckedContinuation<SubmitOutcome, Never>
    }

    private struct State {
        var waiting: [Waiting] = []
        var nextID = 0
        var inFlight = 0
        var running = true
    }

    private static let stopping = SubmitOutcome.transient(BlitlineFailure(kind: .cancelled, message: "the bridge is stopping"))
    private static let cancelled = SubmitOutcome.transient(
        BlitlineFailure(kind: .cancelled, message: "the broker session ended before the job was sent"))

    private let client: BlitlineClient
    private let maxBatch: Int
    private let maxBatchBytes: Int
    private let maxInFlight: Int
    private let state = Mutex(State())
    private let wakeUps: AsyncStream<Void>.Continuation
    private let wakeUpStream: AsyncStream<Void>

    init(client: BlitlineClient, maxBatch: Int = 50, maxBatchBytes: Int = 256 << 10, maxInFlight: Int = 8) {
        self.client = client
        self.maxBatch = maxBatch
        self.maxBatchBytes = maxBatchBytes
        self.maxInFlight = maxInFlight
        (wakeUpStream, wakeUps) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Submits one job of about `bytes` of JSON; the outcome is the job's own even when it
    /// travelled in a batch.
    func submit(_ job: BlitlineJob, bytes: Int) async -> SubmitOutcome {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let refusal = state.withLock { state -> SubmitOutcome? in
                    guard state.running else { return Self.stopping }
                    guard !Task.isCancelled else { return Self.cancelled }
                    state.waiting.append(Waiting(id: id, job: job, bytes: bytes, continuation: continuation))
                    return nil
                }
                if let refusal {
                    continuation.resume(returning: refusal)
                } else {
                    wakeUps.yield()
                }
            }
        } onCancel: {
            let withdrawn = state.withLock { state -> Waiting? in
                guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiting.remove(at: index)
            }
            withdrawn?.continuation.resume(returning: Self.cancelled)
        }
    }

    /// Sends batches until `finish`; then answers whatever still waits as a transient failure.
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
        for entry in abandoned { entry.continuation.resume(returning: Self.stopping) }
    }

    /// Ends `run` once the batches under way are answered.
    func finish() { wakeUps.finish() }

    private func nextBatch() -> [Waiting]? {
        state.withLock { state in
            guard state.inFlight < maxInFlight, !state.waiting.isEmpty else { return nil }
            var count = 1
            var bytes = state.waiting[0].bytes
            while count < min(maxBatch, state.waiting.count), bytes + state.waiting[count].bytes <= maxBatchBytes {
                bytes += state.waiting[count].bytes
                count += 1
            }
            let batch = Array(state.waiting.prefix(count))
            state.waiting.removeFirst(count)
            state.inFlight += 1
            return batch
        }
    }

    private func send(_ batch: [Waiting]) async {
        let outcomes: [SubmitOutcome]
        if batch.count == 1 {
            outcomes = [await client.submit(batch[0].job)]
        } else {
            switch await client.submitBatch(batch.map(\.job)) {
            case .each(let each):
                // Each job's own answer, refusals included: a refusal is final.
                outcomes = each
            case .whole(.rejected):
                // Blitline refused the request as a whole, naming no job: one bad job must not
                // sink the others, so each is asked about on its own.
                var each: [SubmitOutcome] = []
                for entry in batch { each.append(await client.submit(entry.job)) }
                outcomes = each
            case .whole(let outcome):
                outcomes = Array(repeating: outcome, count: batch.count)
            }
        }
        for (entry, outcome) in zip(batch, outcomes) { entry.continuation.resume(returning: outcome) }
    }
}
