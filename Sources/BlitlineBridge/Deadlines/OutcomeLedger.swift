import AMQP
import AsyncSupport
import Foundation
import Logging
import Synchronization

/// Which requests are settled (have a `completed` or `failed` event, a timeout included), learnt
/// by reading the outcomes stream: what a deadline needs to know. The stream holds records naming
/// the requests of each batch of confirmed events (``OutcomeRecord``), and, from versions before
/// 0.2, copies of the events themselves.
///
/// Every instance reads the stream, starting `window` in the past, so each knows every outcome a
/// deadline due now could concern, whichever instance published it, across restarts, with no state
/// outside RabbitMQ. It keeps a fingerprint of each settled request id (``Fingerprints``, about 8
/// bytes each) and forgets it once the event is older than the window. A deadline older than what
/// the ledger has read (every instance was stopped for longer than the window) first has the
/// stream read from its job's submission (``cover(since:timeout:)``).
///
/// `late` results do not settle a request: whether a result is late is decided by the clock
/// (received after the deadline), and such a job gets its `timeout` all the same.
final class OutcomeLedger: Sendable {
    static let marker = "marker"
    /// Stream messages read between acknowledgements (streams count them as credit).
    static let creditBatch = 100

    private struct State {
        var settled: Fingerprints
        /// Milliseconds since the Unix epoch from which the live reader read every event; `nil`
        /// until it has started.
        var liveSince: Int64?
        /// The stream offset the live reader goes on from after a reconnection, and where a
        /// backfill stops.
        var nextOffset: Int64?
        /// What the last backfill read: every outcome since `from`, held until `until`.
        var backfill: (from: Int64, until: Int64)?
        var markerWaiters: [String: AsyncStream<Void>.Continuation] = [:]
        /// The earliest time a deadline asked to be covered, and who waits for it.
        var backfillWanted: Int64?
        var backfillWaiters: [(id: Int, since: Int64, seen: AsyncStream<Void>.Continuation)] = []
        var nextWaiterID = 0
        /// Wakes the backfill reader of the current connection, if one runs.
        var backfillSignal: AsyncStream<Void>.Continuation?
    }

    private let state: Mutex<State>

    /// How long an outcome is kept after its event: past it, a deadline reads the stream again.
    let window: Duration

    /// The window for deadlines decided on time: `JOB_TIMEOUT` and `TIMEOUT_GRACE` after
    /// submission, plus as long again (two minutes at most) for a deadline that waits its turn in
    /// the queue. A deadline later than that has the stream read back for it.
    static func window(jobTimeout: Duration, timeoutGrace: Duration) -> Duration {
        jobTimeout + timeoutGrace + min(jobTimeout, .seconds(120))
    }

    let clock: WallClock
    let logger: Logger

    init(window: Duration, clock: WallClock = .system, logger: Logger = Logger(label: "blitline-bridge.outcomes")) {
        self.clock = clock
        self.window = window
        self.logger = logger
        state = Mutex(State(settled: Fingerprints(span: max(window.milliseconds / 16, 1000))))
    }

    /// Whether the request has a `completed` or `failed` event, as far as the stream was read.
    func isSettled(_ requestID: String) -> Bool {
        let fingerprint = Fingerprints.fingerprint(requestID)
        return state.withLock { $0.settled.contains(fingerprint) }
    }

    /// Records an event read from the stream at `time` (milliseconds since the Unix epoch).
    func record(_ outcome: String, for requestID: String, time: Int64) {
        record(outcome, for: requestID, time: time, now: clock.now())
    }

    private func record(_ outcome: String, for requestID: String, time: Int64, now: Int64) {
        guard outcome != "late" else { return }
        let fingerprint = Fingerprints.fingerprint(requestID)
        state.withLock { $0.settled.insert(fingerprint, time: time, now: now, keepingSince: now - window.milliseconds) }
    }

    /// Fingerprints held, and the bytes their storage takes.
    var size: (entries: Int, bytes: Int) {
        state.withLock { ($0.settled.count, $0.settled.storageBytes) }
    }

    /// Where the live reader starts: where it stopped, or the window before now.
    func liveStart() -> AMQPFieldValue {
        let now = clock.now()
        return state.withLock { state in
            if let next = state.nextOffset { return .int64(next) }
            // The stream starts at the chunk holding that second, perhaps a little before it.
            let since = now - window.milliseconds
            state.liveSince = since
            return .timestamp(UInt64(max(since / 1000, 0)))
        }
    }

    /// Forgets where the live reader stopped, so that the next one starts at the window before now:
    /// the stream was deleted, and once declared again its offsets start afresh, below where the
    /// reader stopped (starting there, it would miss the records written before it came back).
    /// What the ledger knows stays.
    func streamLost() {
        state.withLock { $0.nextOffset = nil }
    }

    /// Reads the stream into the ledger until the consumer ends (the live reader).
    func read(_ consumer: AMQPConsumer) async throws {
        _ = try await read(consumer, timedBy: .event) { offset in
            let first = state.withLock { state in
                defer { state.nextOffset = offset + 1 }
                return state.nextOffset == nil
            }
            // A backfill asked for before the live reader had read anything can start now.
            if first { state.withLock { $0.backfillSignal }?.yield() }
            return true
        }
    }

    /// When a recorded event counts from: its own time (the live reader, which keeps each for the
    /// window after it), or when it was read (a backfill, whose events are older than the window
    /// and must still be kept for the deadlines that asked for them).
    private enum Timing {
        case event, reading
    }

    /// Reads deliveries, recording outcomes and finishing marker waiters, while `goOn` (given
    /// each message's stream offset) says so. Returns `true` when `goOn` stopped it.
    private func read(_ consumer: AMQPConsumer, timedBy timing: Timing, goOn: (Int64) -> Bool) async throws -> Bool {
        var unacknowledged = 0
        for try await delivery in consumer {
            let properties = delivery.properties
            let headers = properties.headers
            if let offset = (headers?["x-stream-offset"]?.intValue).map(Int64.init), !goOn(offset) {
                delivery.ack(multiple: true)
                return true
            }
            let outcome = headers?[BridgeHeader.outcome]?.stringValue
            let now = clock.now()
            let time = timing == .event ? properties.timestamp.map { Int64($0) * 1000 } ?? now : now
            switch outcome {
            case Self.marker?:
                if let id = properties.messageID {
                    state.withLock { $0.markerWaiters.removeValue(forKey: id) }?.finish()
                }
            case OutcomeRecord.outcome?:
                guard let requestIDs = OutcomeRecord.requestIDs(in: delivery.body) else {
                    logger.error(
                        "an outcome record of the stream is unreadable; deadlines may time out the jobs it settled",
                        metadata: ["offset": "\(headers?["x-stream-offset"]?.intValue ?? -1)", "bytes": "\(delivery.body.count)"])
                    break
                }
                for requestID in requestIDs { record("settled", for: requestID, time: time, now: now) }
            case let outcome?:
                // An event, copied into the stream by the binding of a version before 0.2.
                if let requestID = headers?[BridgeHeader.requestID]?.stringValue {
                    record(outcome, for: requestID, time: time, now: now)
                }
            case nil:
                break
            }
            unacknowledged += 1
            if unacknowledged >= Self.creditBatch {
                delivery.ack(multiple: true)
                unacknowledged = 0
            }
        }
        return false
    }

    /// Returns `true` once this instance has read every outcome recorded before the call, by
    /// putting a marker in the stream and waiting to read it back; `false` when the marker did not
    /// come back within `timeout` (the reader lags behind the stream).
    func sync(using publisher: EventPublisher, timeout: Duration = .seconds(10)) async throws -> Bool {
        let id = "marker/" + UUID().uuidString
        let (seen, continuation) = AsyncStream<Void>.makeStream()
        state.withLock { $0.markerWaiters[id] = continuation }
        defer { state.withLock { $0.markerWaiters.removeValue(forKey: id) }?.finish() }
        try await publisher.publishMarker(id)
        return await DeadlineRace.value(within: timeout, fallback: false) {
            for await _ in seen {}
            return true
        }
    }

    // MARK: Reading further back

    /// Returns `true` once the ledger holds every outcome published since `since` (milliseconds
    /// since the Unix epoch), asking the backfill reader for what the live reader has not read or
    /// has forgotten; `false` when that did not happen within `timeout` (the backfill goes on, and
    /// a later call finds it done).
    func cover(since: Int64, timeout: Duration) async -> Bool {
        let now = clock.now()
        let (seen, continuation) = AsyncStream<Void>.makeStream()
        let waiter = state.withLock { state -> Int? in
            if let live = state.liveSince, since >= max(live, now - window.milliseconds) { return nil }
            if let backfill = state.backfill, since >= backfill.from, now < backfill.until { return nil }
            state.backfillWanted = min(state.backfillWanted ?? since, since)
            state.nextWaiterID += 1
            state.backfillWaiters.append((state.nextWaiterID, since, continuation))
            return state.nextWaiterID
        }
        guard let waiter else { return true }
        state.withLock { $0.backfillSignal }?.yield()
        let covered = await DeadlineRace.value(within: timeout, fallback: false) {
            for await _ in seen {}
            return true
        }
        if !covered { state.withLock { $0.backfillWaiters.removeAll { $0.id == waiter } } }
        return covered

    }

    /// Runs the backfills deadlines ask for, one at a time, each on a consumer that `open` starts
    /// at the given offset and reads up to the last message the live reader read. Throws when a consumer ends
    /// early; the backfill is asked for again by the next deadline that needs it.
    func runBackfills(open: (AMQPFieldValue) async throws -> (AMQPChannel, AMQPConsumer)) async throws {
        // A stream of wake-ups for this connection only: iterating one is over when its task is
        // cancelled, and the reader of the next connection needs its own.
        let (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        state.withLock { $0.backfillSignal = signal }
        defer { signal.finish() }
        signal.yield()
        for await _ in signals {
            while let (since, stop) = state.withLock({ state in
                state.backfillWanted.flatMap { wanted in state.nextOffset.map { (wanted, $0 - 1) } }
            }) {
                // Events a little before the submission cannot concern the job; a minute covers
                // clocks that disagree.
                let from = since - 60_000
                let started = clock.now()
                let (channel, consumer) = try await open(.timestamp(UInt64(max(from / 1000, 0))))
                guard try await read(consumer, timedBy: .reading, goOn: { $0 < stop }) else {
                    throw BackfillEnded()
                }
                try? await channel.close()
                let finished = state.withLock { state in
                    state.backfill = (from, started + window.milliseconds)
                    if let wanted = state.backfillWanted, wanted >= since { state.backfillWanted = nil }
                    let done = state.backfillWaiters.filter { $0.since >= from }
                    state.backfillWaiters.removeAll { $0.since >= from }
                    return done.map(\.seen)
                }
                for waiter in finished { waiter.finish() }
            }
        }
    }
}

/// A backfill's consumer ended before it reached where the live reader started.
struct BackfillEnded: Error, CustomStringConvertible {
    var description: String { "the outcomes stream's consumer ended before the backfill was complete" }
}
