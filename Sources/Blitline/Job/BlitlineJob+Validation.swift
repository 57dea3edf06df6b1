extension BlitlineJob {
    /// Checks a request body against the request rules (README, "Request") and returns the job it holds.
    ///
    /// Refused: more than `maxBytes` bytes; not UTF-8 JSON; not an object; no `src` (a non-empty
    /// string or an object); no non-empty `functions` array of objects that each name a function;
    /// a `postback_url` (the bridge sets it); no `application_id` in the job and no
    /// `defaultApplicationID`. The error's message names the field and what was expected.
    public static func validate(
        _ body: [UInt8],
        defaultApplicationID: String?,
        maxBytes: Int
    ) throws(JobValidationError) -> BlitlineJob {
        guard body.count <= maxBytes else {
            throw JobValidationError(
                .tooLarge,
                "the request is \(body.count) bytes; at most \(maxBytes) bytes are accepted"
            )
        }
        let json: JSONValue
        do {
            json = try JSONValue(parsing: body)
        } catch {
            let what = error.isInvalidUTF8 ? "UTF-8 text" : "JSON"
            throw JobValidationError(
                .notJSON,
                "the request body is not valid \(what) (\(error)); expected one Blitline job as a JSON object"
            )
        }
        guard json.isObject else {
            throw JobValidationError(
                .notAnObject,
                "the request body is \(json.kindDescription); expected one Blitline job as a JSON object"
                    + " (send a batch as separate messages)"
            )
        }
        try self.checkSource(json["src"])
        try self.checkFunctions(json["functions"])
        if json["postback_url"] != nil {
            throw JobValidationError(
                .postbackURLPresent,
                "field `postback_url` must be left out: the bridge sets it and publishes the result as an event"
            )
        }
        let job = BlitlineJob(unchecked: json)
        if let id = json["application_id"], id.stringValue?.isEmpty != false {
            throw JobValidationError(
                .missingApplicationID,
                "field `application_id` is \(id.stringValue == nil ? id.kindDescription : "empty");"
                    + " expected your Blitline application id as a non-empty string, or leave it out to use the configured one"
            )
        }
        if job.applicationID == nil, (defaultApplicationID ?? "").isEmpty {
            throw JobValidationError(
                .missingApplicationID,
                "field `application_id` is missing and no default application id is configured;"
                    + " add `application_id` (your Blitline application id) to the job"
            )
        }
        return job
    }

    private static func checkSource(_ src: JSONValue?) throws(JobValidationError) {
        switch src {
        case .none:
            throw JobValidationError(
                .missingSource,
                "field `src` is missing; expected the source image URL as a string, or a source object such as {\"name\":\"s3\",\"bucket\":…,\"key\":…}"
            )
        case .object:
            return
        case .string(let url) where !url.isEmpty:
            return
        case .some(let other):
            let found = other.stringValue == nil ? other.kindDescription : "an empty string"
            throw JobValidationError(
                .missingSource,
                "field `src` is \(found); expected the source image URL as a non-empty string, or a source object"
            )
        }
    }

    private static func checkFunctions(_ functions: JSONValue?) throws(JobValidationError) {
        let example = "{\"name\":\"resize_to_fit\",\"params\":{\"width\":100},\"save\":{\"image_identifier\":\"thumb\"}}"
        guard let functions else {
            throw JobValidationError(
                .missingFunctions,
                "field `functions` is missing; expected a non-empty array of function objects such as \(example)"
            )
        }
        guard let elements = functions.arrayValue else {
            throw JobValidationError(
                .missingFunctions,
                "field `functions` is \(functions.kindDescription); expected a non-empty array of function objects such as \(example)"
            )
        }
        guard !elements.isEmpty else {
            throw JobValidationError(
                .missingFunctions,
                "field `functions` is an empty array; expected at least one function object such as \(example)"
            )
        }
        for (index, function) in elements.enumerated() {
            guard function.isObject else {
                throw JobValidationError(
                    .missingFunctions,
                    "`functions[\(index)]` is \(function.kindDescription); expected a function object such as \(example)"
                )
            }
            guard let name = function["name"]?.stringValue, !name.isEmpty else {
                throw JobValidationError(
                    .missingFunctions,
                    "`functions[\(index)].name` is missing or not a string; expected a Blitline function name such as \"resize_to_fit\""
                )
            }
        }
    }
}
