/// One Blitline job, carried as the JSON its author wrote.
///
/// Every field (all function names, destinations, `pre_process`, fields Blitline adds in the
/// future) is kept as it is, numbers included; only ``prepared(applicationID:postbackURL:)`` adds
/// what the bridge sets on purpose.
public struct BlitlineJob: Sendable, Hashable {
    /// The job object.
    public private(set) var json: JSONValue

    /// Wraps a job object; `nil` when `json` is not an object.
    public init?(json: JSONValue) {
        guard json.isObject else { return nil }
        self.json = json
    }

    /// The job's `application_id` when it is a non-empty string.
    public var applicationID: String? {
        guard let id = self.json["application_id"]?.stringValue, !id.isEmpty else { return nil }
        return id
    }

    /// The job's `postback_url` when it is a string.
    public var postbackURL: String? {
        self.json["postback_url"]?.stringValue
    }

    /// The job as compact JSON text.
    public var jsonBytes: [UInt8] { self.json.jsonBytes }

    /// The API version the bridge sends when a job names none.
    public static let defaultVersion: JSONValue = .number("1.22")

    /// The job as the bridge submits it: `application_id` added when absent (and a default is
    /// given), `"v": 1.22` when absent, and, when `postbackURL` is given, `postback_url` set to it
    /// with `"retry_postback": true`. Every other member is left exactly as it was.
    public func prepared(applicationID defaultApplicationID: String?, postbackURL: String?) -> BlitlineJob {
        var json = self.json
        if self.applicationID == nil, let defaultApplicationID {
            json["application_id"] = .string(defaultApplicationID)
        }
        if json["v"] == nil {
            json["v"] = Self.defaultVersion
        }
        if let postbackURL {
            json["postback_url"] = .string(postbackURL)
            json["retry_postback"] = .bool(true)
        }
        return BlitlineJob(unchecked: json)
    }

    /// The job's JSON with `application_id` replaced by `"<redacted>"`, for logs.
    public var redactedJSONString: String {
        var json = self.json
        if json["application_id"] != nil { json["application_id"] = "<redacted>" }
        return json.jsonString
    }

    init(unchecked json: JSONValue) {
        self.json = json
    }
}
