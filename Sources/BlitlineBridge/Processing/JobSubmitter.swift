import AsyncSupport
import Blitline
import Tracing

/// Submits jobs to Blitline. Requests that arrive while `maxInFlight` submissions are under way are
/// combined into batch requests (Blitline takes an array of jobs and answers in order), so a busy
/// bridge makes few, larger requests and a quiet one submits each job at once. A batch holds at
/// most `maxBatch` jobs and `maxBatchBytes` of their JSON (a larger job goes alone): each request
/// is encoded several times over on its way out, so large jobs must not travel fifty at a time.
///
/// A caller cancelled while its job still waits for a batch gets `.transient(.cancelled)` at once
/// and its job is never sent: a session that ends starts no new submission.
final class JobSubmitter: Sendable {
    private struct Request: Sendable {
        let job: BlitlineJob
        let bytes: Int
        /// The caller's trace context (its request's consumer span): the submission's parent.
        let context: ServiceContext
    }

    private struct State: Sendable {
        var inFlight = 0
        var running = true
    }

    private typealias Line = WaitingLine<State, Request, SubmitOutcome>

    private static let stopping = SubmitOutcome.transient(BlitlineFailure(kind: .cancelled, message: "the bridge is stopping"))
    private static let cancelled = SubmitOutcome.transient(
        BlitlineFailure(kind: .cancelled, message: "the broker session ended before the job was sent"))

    private let client: BlitlineClient
    private let maxBatch: Int
    private let maxBatchBytes: Int
    private let maxInFlight: Int
    private let line = Line(State())
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
        await line.wait(Request(job: job, bytes: bytes, context: .current ?? .topLevel), cancelled: Self.cancelled) { state, _ in
            state.running ? nil : Self.stopping
        } parked: {
            wakeUps.yield()
        }
    }

    /// Sends batches until `finish`; then answers whatever still waits as a transient failure.
    func run() async {
        await withDiscardingTaskGroup { group in
            for await _ in wakeUpStream {
                while let batch = nextBatch() {
                    group.addTask {
                        await self.send(batch)
                        self.line.withLock { state, _ in state.inFlight -= 1 }
                        self.wakeUps.yield()
                    }
                }
            }
        }
        let abandoned = line.withLock { state, line in
            state.running = false
            return line.removeAll()
        }
        for waiter in abandoned { waiter.resume(returning: Self.stopping) }
    }

    /// Ends `run` once the batches under way are answered.
    func finish() { wakeUps.finish() }

    private func nextBatch() -> [Line.Waiter]? {
        line.withLock { state, line in
            guard state.inFlight < maxInFlight, !line.isEmpty else { return nil }
            var count = 1
            var bytes = line[0].bytes
            while count < min(maxBatch, line.count), bytes + line[count].bytes <= maxBatchBytes {
                bytes += line[count].bytes
                count += 1
            }
            state.inFlight += 1
            return line.removeFirst(count)
        }
    }

    /// Sends a batch within its first job's trace, linked to the others' (README, "Tracing").
    private func send(_ batch: [Line.Waiter]) async {
        let outcomes: [SubmitOutcome]
        if batch.count == 1 {
            outcomes = await ServiceContext.withValue(batch[0].element.context) {
                [await client.submit(batch[0].element.job)]
            }
        } else {
            outcomes = await withSpan("submit batch", context: batch[0].element.context, ofKind: .internal) { span in
                if span.isRecording {
                    span.attributes["blitline_bridge.batch_size"] = batch.count
                    for waiter in batch.dropFirst() { span.addLink(SpanLink(context: waiter.element.context, attributes: [:])) }
                }
                return await submit(batch)
            }
        }
        for (waiter, outcome) in zip(batch, outcomes) { waiter.resume(returning: outcome) }
    }

    private func submit(_ batch: [Line.Waiter]) async -> [SubmitOutcome] {
        switch await client.submitBatch(batch.map(\.element.job)) {
        case .each(let each):
            // Each job's own answer, refusals included: a refusal is final.
            return each
        case .whole(.rejected):
            // Blitline refused the request as a whole, naming no job: one bad job must not sink
            // the others, so each is asked about on its own.
            var each: [SubmitOutcome] = []
            for waiter in batch { each.append(await client.submit(waiter.element.job)) }
            return each
        case .whole(let outcome):
            return Array(repeating: outcome, count: batch.count)
        }
    }
}
