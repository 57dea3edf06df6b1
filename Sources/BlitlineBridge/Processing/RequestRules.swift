import AMQP
import Blitline

/// Every decision about one request, apart from I/O: what arrives decides the first step, and the
/// result of each step decides the next. `RequestProcessor` carries the steps out.
///
/// A request goes through at most these steps: count a redelivery (classic queues only), submit
/// (again after a transient failure, through a retry queue), then either schedule what finishes it
/// (deadline, polls) or fail it (event and dead letter). A publish refused for this request alone
/// (a setback) never ends the session: the request is put back for later with what it reached, so
/// that a job Blitline accepted is never submitted again; when even that copy is refused, the
/// request is held and the copy tried again.
struct RequestRules: Sendable {
    var maxRequestBytes: Int
    var defaultApplicationID: String?
    var submitMaxAttempts: Int
    /// A request redelivered more often than this is dead-lettered instead of being taken again.
    var maxRedeliveries: Int
    var jobTimeout: Duration

    /// How long after its submission a job id a request carries back (`x-bridge-job-id`) is
    /// believed: as long as the outcomes stream is sure to keep the job's outcome. Older, the
    /// request is submitted afresh.
    var jobIDWindow: Duration { jobTimeout + Topology.outcomesKeptAfterTimeout }

    /// A request message as it arrived.
    struct Arrival: Sendable {
        var body: [UInt8]
        var properties: AMQPProperties
        var redelivered: Bool
        /// The body was over the limit and was not kept (`body` is empty).
        var isBodyDiscarded = false
        var bodySize: UInt64
    }

    /// What to do next with a request.
    enum Step: Sendable, Equatable {
        /// A classic queue redelivered it: put it back at the tail of the jobs queue carrying its
        /// redelivery count, since classic queues keep none.
        case countRedelivery(Int)
        /// Submit the job (the `attempt`-th time).
        case submit(BlitlineJob, attempt: Int)
        /// Blitline accepted the job: make the broker hold its deadline (and polls), then ack. A
        /// deadline already past (setbacks outlasted `JOB_TIMEOUT`) is due at once.
        case schedule(jobID: String, submittedAt: Int64, applicationID: String?)
        /// The request cannot succeed: its failure event, the request into the dead-letter queue, ack.
        case fail(JobEvent.Reason, message: String)
        /// Put the request in the retry queue of `delayStep`, carrying `headers`, then ack.
        case retry(delayStep: Int, headers: AMQPTable)
        /// Leave it unacknowledged: the session is ending and the broker gives it to the next one.
        case giveBack
        /// It came back (a retry, a redelivery) and its outcome is already recorded: the job Blitline
        /// ran for it has its result out (the answer to its submission was lost on its way, or the
        /// bridge stopped after submitting it). Ack it; nothing is submitted again.
        case settled
        /// Not even a copy of it could be published: hand it back to the queue after a pause.
        case requeueAfterPause
        /// Not even a copy of it could be published, and the copy carries what the request reached
        /// (a job Blitline accepted, a failure decided), which the message in the queue lacks:
        /// hold the request, and publish the copy (`retry`) again after a pause.
        case retryAfterPause(delayStep: Int, headers: AMQPTable)
    }

    // MARK: Arrival

    /// The first step for a request as it arrived. `now` is milliseconds since the Unix epoch;
    /// `isSettled` says whether a request id's outcome is recorded (``OutcomeLedger``).
    func firstStep(
        for arrival: Arrival, context: RequestEnvelope, now: Int64, isSettled: (String) -> Bool = { _ in false }
    ) -> Step {
        let headers = arrival.properties.headers ?? [:]
        // Every copy the bridge puts back carries the request id. A decided failure comes back for
        // its dead letter, which follows its event.
        let cameBack = arrival.redelivered || headers[BridgeHeader.requestID] != nil
        if cameBack, headers[BridgeHeader.failure] == nil, isSettled(context.requestID) { return .settled }
        if arrival.redelivered {
            // Quorum queues count deliveries themselves; classic queues need the bridge to.
            if let count = headers.integer("x-delivery-count", in: 0...Int(Int32.max)) {
                if count > maxRedeliveries { return redeliveredTooOften(count) }
            } else {
                let count = (headers.integer(BridgeHeader.redeliveries, in: 0...maxRedeliveries) ?? 0) + 1
                return count > maxRedeliveries ? redeliveredTooOften(count) : .countRedelivery(count)
            }
        }
        if let problem = context.problem { return .fail(.invalidRequest, message: problem) }
        if arrival.isBodyDiscarded {
            return .fail(
                .invalidRequest,
                message: "the request is \(arrival.bodySize) bytes; at most \(maxRequestBytes) bytes are accepted")
        }
        if let reason = headers[BridgeHeader.failure]?.stringValue.flatMap(JobEvent.Reason.init(rawValue:)),
            let message = headers[BridgeHeader.error]?.stringValue
        {
            return .fail(reason, message: message)
        }
        let job: BlitlineJob
        do {
            job = try BlitlineJob.validate(arrival.body, defaultApplicationID: defaultApplicationID, maxBytes: maxRequestBytes)
        } catch {
            return .fail(.invalidRequest, message: error.message)
        }
        // A job Blitline accepted before is never submitted again while the outcomes stream can
        // still say whether it finished: past its deadline, the deadline is due at once.
        if let jobID = headers[BridgeHeader.jobID]?.stringValue, Self.isJobID(jobID),
            let submittedAt = headers.integer(BridgeHeader.submittedAt, in: 0...Int(Int64.max)),
            Int64(submittedAt) <= now, now - Int64(submittedAt) < jobIDWindow.milliseconds
        {
            return .schedule(
                jobID: jobID, submittedAt: Int64(submittedAt), applicationID: job.applicationID ?? defaultApplicationID)
        }
        return .submit(job, attempt: headers.integer(BridgeHeader.attempt, in: 1...submitMaxAttempts) ?? 1)
    }

    private func redeliveredTooOften(_ count: Int) -> Step {
        .fail(
            .submitFailed,
            message: "the request was delivered \(count + 1) times without being settled "
                + "(the bridge lost the broker or stopped while holding it); it is not submitted again")
    }

    /// A Blitline job id as the bridge carries it: short, printable, URL-safe.
    static func isJobID(_ text: String) -> Bool {
        (1...128).contains(text.utf8.count)
            && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }
    }

    // MARK: Submission

    /// The step after Blitline answered the `attempt`-th submission made at `submittedAt`.
    func afterSubmit(_ outcome: SubmitOutcome, attempt: Int, submittedAt: Int64, applicationID: String?) -> Step {
        switch outcome {
        case .accepted(let jobID, _):
            return .schedule(jobID: jobID, submittedAt: submittedAt, applicationID: applicationID)
        case .rejected(let message):
            return .fail(.rejected, message: message)
        case .transient(let failure) where failure.kind == .cancelled:
            return .giveBack
        case .transient(let failure):
            guard attempt < submitMaxAttempts else {
                return .fail(
                    .submitFailed, message: "Blitline could not be reached after \(attempt) attempts: \(failure.message)")
            }
            return .retry(
                delayStep: Topology.retryStep(attempt: attempt, minimum: failure.retryAfter),
                headers: [BridgeHeader.attempt: .int32(Int32(attempt + 1))])
        }
    }

    // MARK: Setbacks

    /// The step after a publish for `step` was refused for this request alone (nacked, returned,
    /// not encodable, or its channel closed by the broker again and again). `setbacks` is how
    /// often that happened before.
    func afterSetback(of step: Step, setbacks: Int) -> Step {
        let delayStep = min(setbacks, Topology.retryDelays.count - 1)
        let count: AMQPTable = [BridgeHeader.setbacks: .int32(Int32(min(setbacks + 1, Self.maxSetbacks)))]
        switch step {
        case .schedule(let jobID, let submittedAt, _):
            return .retry(
                delayStep: delayStep,
                headers: count.merging([BridgeHeader.jobID: .string(jobID), BridgeHeader.submittedAt: .int64(submittedAt)]))
        case .fail(let reason, let message):
            return .retry(
                delayStep: delayStep,
                headers: count.merging([BridgeHeader.failure: .string(reason.rawValue), BridgeHeader.error: .string(message)]))
        case .retry(let held, let headers) where headers[BridgeHeader.jobID] != nil || headers[BridgeHeader.failure] != nil,
            .retryAfterPause(let held, let headers):
            // Handed back as it came, the request would be submitted again. The pauses in hand are
            // its backoff: the copy keeps its delay.
            return .retryAfterPause(delayStep: held, headers: headers.merging(count))
        case .countRedelivery, .retry, .submit, .giveBack, .settled, .requeueAfterPause:
            return .requeueAfterPause
        }
    }

    /// Setbacks are counted up to here (the delay stops growing long before).
    static let maxSetbacks = 1000

    /// The setbacks a request already had, from its header.
    static func setbacks(in properties: AMQPProperties) -> Int {
        properties.headers?.integer(BridgeHeader.setbacks, in: 0...maxSetbacks) ?? 0
    }
}

extension AMQPTable {
    /// This table with `other`'s entries set over it.
    func merging(_ other: AMQPTable) -> AMQPTable {
        var merged = self
        for (key, value) in other { merged[key] = value }
        return merged
    }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
