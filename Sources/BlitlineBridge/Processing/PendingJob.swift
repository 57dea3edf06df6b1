import Blitline

/// A job Blitline has accepted and whose outcome the bridge still waits for. It travels in the
/// broker (deadline and poll messages) so that any instance can finish it.
struct PendingJob: Sendable, Hashable {
    var context: RequestEnvelope
    var jobID: String
    /// Milliseconds since the Unix epoch.
    var submittedAt: Int64
    var deadline: Int64
    /// A hash of the application id: the poll rate limit's key. The id itself is a secret.
    var applicationKey: String

    var json: JSONValue {
        var members: [JSONValue.Member] = [
            .init(key: "request_id", value: .string(context.requestID)),
            .init(key: "job_id", value: .string(jobID)),
            .init(key: "submitted_at", value: .number(String(submittedAt))),
            .init(key: "deadline", value: .number(String(deadline))),
            .init(key: "application_key", value: .string(applicationKey)),
        ]
        if let value = context.correlationID { members.append(.init(key: "correlation_id", value: .string(value))) }
        if let value = context.replyTo { members.append(.init(key: "reply_to", value: .string(value))) }
        if let value = context.traceparent { members.append(.init(key: "traceparent", value: .string(value))) }
        if let value = context.tracestate { members.append(.init(key: "tracestate", value: .string(value))) }
        return .object(members)
    }

    init(context: RequestEnvelope, jobID: String, submittedAt: Int64, deadline: Int64, applicationKey: String) {
        self.context = context
        self.jobID = jobID
        self.submittedAt = submittedAt
        self.deadline = deadline
        self.applicationKey = applicationKey
    }

    /// Reads a record written by `json`; `nil` for anything else.
    init?(bytes: [UInt8]) {
        guard let json = try? JSONValue(parsing: bytes) else { return nil }
        self.init(json: json)
    }

    /// Reads the records of a deadline message (an array of them, or one alone), and how many of
    /// its parts could not be read.
    static func all(in bytes: [UInt8]) -> (jobs: [PendingJob], unreadable: Int) {
        guard let json = try? JSONValue(parsing: bytes) else { return ([], 1) }
        let members = json.arrayValue ?? [json]
        let jobs = members.compactMap(PendingJob.init(json:))
        return (jobs, members.count - jobs.count)
    }

    private init?(json: JSONValue) {
        guard let requestID = json["request_id"]?.stringValue,
            let jobID = json["job_id"]?.stringValue,
            let submittedAt = json["submitted_at"]?.intValue,
            let deadline = json["deadline"]?.intValue
        else { return nil }
        self.context = RequestEnvelope(
            requestID: requestID, correlationID: json["correlation_id"]?.stringValue,
            replyTo: json["reply_to"]?.stringValue, traceparent: json["traceparent"]?.stringValue,
            tracestate: json["tracestate"]?.stringValue)
        self.jobID = jobID
        self.submittedAt = Int64(submittedAt)
        self.deadline = Int64(deadline)
        self.applicationKey = json["application_key"]?.stringValue ?? ""
    }
}
