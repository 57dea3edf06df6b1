import Metrics

/// The bridge's metrics (README, "Metrics"). Labels are few and bounded: outcomes, event types
/// and reasons, never ids.
///
/// A class: the handlers of requests and postbacks hold it, and a copy of them would otherwise
/// retain each of its two dozen metrics.
final class BridgeMetrics: Sendable {
    let requestsReceived = Counter(label: "blitline_bridge_requests_received_total")
    let requestsInFlight = Meter(label: "blitline_bridge_requests_in_flight")
    /// Long polls open at once (polling mode); at `POLL_CONCURRENCY` the rate is no longer spent.
    let pollsInFlight = Meter(label: "blitline_bridge_polls_in_flight")
    let submitRetries = Counter(label: "blitline_bridge_submit_retries_total")
    let submitDuration = Timer(label: "blitline_bridge_submit_duration_seconds", preferredDisplayUnit: .seconds)
    let postbackToEvent = Timer(label: "blitline_bridge_postback_to_event_seconds", preferredDisplayUnit: .seconds)
    let jobDuration = Timer(label: "blitline_bridge_job_duration_seconds", preferredDisplayUnit: .seconds)
    let brokerReconnects = Counter(label: "blitline_bridge_broker_reconnects_total")
    /// 1 while the bridge is connected to the broker with its topology declared, else 0.
    let brokerConnected = Gauge(label: "blitline_bridge_broker_connected")
    /// 1 while the broker blocks the bridge's publishing (a memory or disk alarm), else 0.
    let brokerBlocked = Gauge(label: "blitline_bridge_broker_blocked")
    /// Settled requests the outcome ledger knows, and the bytes their fingerprints take.
    let ledgerFingerprints = Gauge(label: "blitline_bridge_outcome_ledger_fingerprints")
    let ledgerBytes = Gauge(label: "blitline_bridge_outcome_ledger_bytes")
    /// Publishes refused for one request (nacked, returned, not encodable): the request was put back for later.
    let requestSetbacks = Counter(label: "blitline_bridge_request_setbacks_total")
    /// Results whose events the events exchange refused, held in the timeouts queue until it takes them.
    let eventsHeld = Counter(label: "blitline_bridge_events_held_total")

    /// What became of a submission (`blitline_bridge_submissions_total{outcome}`).
    enum SubmissionOutcome: String, CaseIterable, Sendable {
        case accepted, rejected, transient
    }

    /// What became of a postback (`blitline_bridge_postbacks_total{outcome}`).
    enum PostbackOutcome: String, CaseIterable, Sendable {
        case accepted, unsigned, forged, expired, malformed, unavailable, overloaded
        case timedOut = "timed_out"
    }

    /// What a long poll found (`blitline_bridge_polls_total{outcome}`).
    enum PollOutcome: String, CaseIterable, Sendable {
        case result, pending, failed
        /// Refused by Blitline for its rate (HTTP 429): every poll of the application id waited.
        case rateLimited = "rate_limited"
    }

    private let submissions = LabelledCounter(
        "blitline_bridge_submissions_total", label: "outcome", values: SubmissionOutcome.allCases.map(\.rawValue))
    private let postbacks = LabelledCounter(
        "blitline_bridge_postbacks_total", label: "outcome",
        values: PostbackOutcome.allCases.map(\.rawValue))
    private let polls = LabelledCounter(
        "blitline_bridge_polls_total", label: "outcome", values: PollOutcome.allCases.map(\.rawValue))
    private let events: [String: Counter] = {
        let reasons = ["none", "invalid_request", "rejected", "submit_failed", "processing_failed", "timeout"]
        var counters: [String: Counter] = [:]
        for type in ["completed", "failed"] {
            for reason in reasons {
                counters[type + "/" + reason] = Counter(
                    label: "blitline_bridge_events_published_total", dimensions: [("type", type), ("reason", reason)])
            }
        }
        return counters
    }()

    func submission(_ outcome: SubmissionOutcome) { submissions.increment(outcome.rawValue) }

    func postback(_ outcome: PostbackOutcome) { postbacks.increment(outcome.rawValue) }

    func poll(_ outcome: PollOutcome) { polls.increment(outcome.rawValue) }

    func event(_ event: JobEvent) {
        events[event.status.rawValue + "/" + (event.reason?.rawValue ?? "none")]?.increment()
    }
}

/// A counter with one label whose few values are known: made once, not looked up per increment
/// (these are counted several times per job).
private struct LabelledCounter: Sendable {
    private let counters: [String: Counter]

    init(_ name: String, label: String, values: [String]) {
        counters = Dictionary(uniqueKeysWithValues: values.map { ($0, Counter(label: name, dimensions: [(label, $0)])) })
    }

    func increment(_ value: String) { counters[value]?.increment() }
}

extension Timer {
    /// Records the time since `start`.
    func record(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
