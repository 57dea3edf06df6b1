import Blitline
import Synchronization

/// Counters that `GET /_control/stats` reports.
struct SimulatorStats: Sendable {
    var submitRequests = 0
    var submitFaults = 0
    var jobsAccepted = 0
    var jobsRejected = 0
    var jobsCompleted = 0
    var jobsFailed = 0
    var postbacksSent = 0
    var postbacksAcknowledged = 0
    var postbacksFailedAttempts = 0
    var postbacksGivenUp = 0
    var postbacksDropped = 0
    var postbacksDuplicated = 0
    var polls = 0
    var pollsAnswered = 0
    var pollsRateLimited = 0
    /// Results that left the poll cache before any poll read them: a client lost them.
    var resultsExpiredUnread = 0
    /// The longest a result waited in the poll cache for its first reader.
    var resultWaitMaxMilliseconds = 0

    var json: JSONValue {
        [
            "submit_requests": .number(self.submitRequests),
            "submit_faults": .number(self.submitFaults),
            "jobs_accepted": .number(self.jobsAccepted),
            "jobs_rejected": .number(self.jobsRejected),
            "jobs_completed": .number(self.jobsCompleted),
            "jobs_failed": .number(self.jobsFailed),
            "postbacks_sent": .number(self.postbacksSent),
            "postbacks_acknowledged": .number(self.postbacksAcknowledged),
            "postbacks_failed_attempts": .number(self.postbacksFailedAttempts),
            "postbacks_given_up": .number(self.postbacksGivenUp),
            "postbacks_dropped": .number(self.postbacksDropped),
            "postbacks_duplicated": .number(self.postbacksDuplicated),
            "polls": .number(self.polls),
            "polls_answered": .number(self.pollsAnswered),
            "polls_rate_limited": .number(self.pollsRateLimited),
            "results_expired_unread": .number(self.resultsExpiredUnread),
            "result_wait_max_ms": .number(self.resultWaitMaxMilliseconds),
        ]
    }
}

/// The counters, shared by the handlers and the processing tasks.
final class StatisticsRecorder: Sendable {
    private let state = Mutex(SimulatorStats())

    func count(_ update: (inout SimulatorStats) -> Void) {
        self.state.withLock { update(&$0) }
    }

    func reset() {
        self.state.withLock { $0 = SimulatorStats() }
    }

    var json: JSONValue { self.state.withLock { $0.json } }
}
