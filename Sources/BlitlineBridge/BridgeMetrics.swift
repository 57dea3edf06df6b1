import Metrics

/// The bridge's metrics (contract section 9). Labels are few and bounded: outcomes, event types
/// and reasons, never ids.
struct BridgeMetrics: Sendable {
    let requestsReceived = Counter(label: "blitline_bridge_requests_received_total")
    let requestsInFlight = Meter(label: "blitline_bridge_requests_in_flight")
    let submitRetries = Counter(label: "blitline_bridge_submit_retries_total")
    let submitDuration = Timer(label: "blitline_bridge_submit_duration_seconds", preferredDisplayUnit: .seconds)
    let postbackToEvent = Timer(label: "blitline_bridge_postback_to_event_seconds", preferredDisplayUnit: .seconds)
    let jobDuration = Timer(label: "blitline_bridge_job_duration_seconds", preferredDisplayUnit: .seconds)
    let brokerReconnects = Counter(label: "blitline_bridge_broker_reconnects_total")

    private let submissions = LabelledCounter(
        "blitline_bridge_submissions_total", label: "outcome", values: ["accepted", "rejected", "transient"])
    private let postbacks = LabelledCounter(
        "blitline_bridge_postbacks_total", label: "outcome",
        values: ["accepted", "unsigned", "forged", "expired", "malformed", "unavailable", "overloaded", "timed_out"])
    private let polls = LabelledCounter("blitline_bridge_polls_total", label: "outcome", values: ["result", "pending", "failed"])
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

    /// `accepted`, `rejected` or `transient`.
    func submission(_ outcome: String) { submissions.increment(outcome) }

    /// `accepted`, `unsigned`, `forged`, `expired`, `malformed`, `unavailable`, `overloaded`,
    /// `timed_out`.
    func postback(_ outcome: String) { postbacks.increment(outcome) }

    /// `result`, `pending`, `failed`.
    func poll(_ outcome: String) { polls.increment(outcome) }

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
