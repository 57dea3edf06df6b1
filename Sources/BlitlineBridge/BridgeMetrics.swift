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

    /// `accepted`, `rejected` or `transient`.
    func submission(_ outcome: String) {
        Counter(label: "blitline_bridge_submissions_total", dimensions: [("outcome", outcome)]).increment()
    }

    /// `accepted`, `unsigned`, `forged`, `malformed`, `unavailable`.
    func postback(_ outcome: String) {
        Counter(label: "blitline_bridge_postbacks_total", dimensions: [("outcome", outcome)]).increment()
    }

    /// `result`, `pending`, `failed`.
    func poll(_ outcome: String) {
        Counter(label: "blitline_bridge_polls_total", dimensions: [("outcome", outcome)]).increment()
    }

    func event(_ event: JobEvent) {
        Counter(
            label: "blitline_bridge_events_published_total",
            dimensions: [("type", event.status.rawValue), ("reason", event.reason?.rawValue ?? "none")]
        ).increment()
    }
}

extension Timer {
    /// Records the time since `start`.
    func record(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
