import Blitline

/// A job the simulator accepted, with what processing and the postback need from it.
struct SimulatedJob: Sendable {
    let jobID: String
    let json: JSONValue
    let applicationID: String

    /// `postback_url`, when the job has one (then it is never published to the poll cache).
    var postbackURL: String? { self.json["postback_url"]?.stringValue }

    /// `postback_headers` as name/value pairs (non-string values written as JSON).
    var postbackHeaders: [(name: String, value: String)] {
        (self.json["postback_headers"]?.objectMembers ?? []).map { ($0.key, $0.value.stringValue ?? $0.value.jsonString) }
    }

    /// `v`, read from a number or a string (Go clients send `"1.22"`); `nil` when absent.
    var version: Double? {
        switch self.json["v"] {
        case .number(let lexeme): Double(lexeme)
        case .string(let text): Double(text)
        default: nil
        }
    }

    /// Whether postbacks go out as JSON (`v` above 1.17, or `content_type_json`).
    var postsJSON: Bool {
        (self.version ?? 0) > 1.17 || self.json["content_type_json"]?.boolValue == true
    }

    /// Whether errors are lifted to the top of the result (`v` above 1.19).
    var liftsErrors: Bool { (self.version ?? 0) > 1.19 }

    /// Whether failed postbacks are retried (`retry_postback` with `v` 1.2 or above).
    var retriesPostback: Bool {
        self.json["retry_postback"]?.boolValue == true && (self.version ?? 0) >= 1.2
    }
}
