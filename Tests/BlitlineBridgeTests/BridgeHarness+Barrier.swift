import Testing
import TestSupport

extension BridgeHarness {
    /// Waits until the collectors have read everything the bridges published for what the test
    /// finished before this call: publishes a sentinel request (a valid job with an id of its own
    /// and `reply_to` the reply queue) and waits for its event on the events queue and on the
    /// reply queue. The sentinels' events are left out of `events` and `replies`; the simulator's
    /// counters and the bridges' metrics do count them (``sentinelsPublished``).
    ///
    /// What the sentinel's event proves:
    /// - a bridge took the sentinel from the jobs queue, submitted it and received its result
    ///   before publishing its event, all of it after this call published the sentinel;
    /// - every event the broker had confirmed before that is in the collectors: each collector is
    ///   the only consumer of one queue, which delivers in the order the broker took messages in.
    ///
    /// So an event is ruled out when whatever would publish it was over before this call, as a fact
    /// the test saw: an HTTP answer it received (the bridge answers a postback once its event is
    /// confirmed, and a refused one after all its handling), a simulator counter it waited for
    /// (`postbacks_acknowledged`: answered 2xx), a queue it saw empty (a request or a deadline is
    /// acknowledged only after its events are confirmed).
    ///
    /// It proves nothing about work still in hand when it is called: a bridge handles requests and
    /// postbacks concurrently, so work begun before the sentinel may end after it, and what starts
    /// later by itself (a deadline expiring, a postback retry the simulator schedules) is not
    /// covered. Where a test has no fact to wait for first, the sentinel wins the race by its length
    /// only (a consume, a submit, 50 ms of simulated processing and a postback, all slower on a
    /// loaded machine, as the work it races is): better than a fixed sleep, not a proof.
    ///
    /// The sentinel takes whatever the simulator's fault plan still holds (a drop, a duplicate, a
    /// failing submit): call this once the test's faults are used up.
    func barrier(timeout: Duration = .seconds(30), sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let id = nextSentinelID()
        var sentinel = TestRequest.thumbnails(id)
        sentinel.replyTo = replyQueue
        try await publish(sentinel)
        let arrived = await eventually(timeout: timeout) {
            events.hasSentinelEvent(id) && replies.hasSentinelEvent(id)
        }
        try #require(arrived, "no event for the barrier's sentinel \(id)\n\(diagnostics())", sourceLocation: sourceLocation)
    }
}
