/// Classifies Blitline's answer to a submit: the one place that decides accepted, rejected or
/// transient.
///
/// A Blitline `error` is a refusal whatever the status; a batch's per-job results are each job's
/// answer whatever the status; without those, HTTP 429, 408 and 5xx are transient, other non-2xx
/// statuses are refusals that name the status, and a 2xx reply is matched to the submitted jobs by
/// position.
enum SubmitReply {
    static func classify(
        status: Int,
        retryAfter: Duration?,
        body: [UInt8],
        jobCount: Int,
        isBatch: Bool
    ) -> SubmitAnswer {
        let results = Self.results(in: body)
        if let error = Self.error(in: results) {
            return .whole(.rejected(message: "Blitline refused the job: \(error)"))
        }
        // A batch answered job by job, refusals among them: each job's answer is its own,
        // whatever the status says of the request.
        if isBatch, case .array(let entries)? = results, entries.count == jobCount,
            entries.contains(where: { Self.error(in: $0) != nil })
        {
            return .each(entries.map(Self.outcome(of:)))
        }
        if status == 429 {
            let failure = BlitlineFailure(
                kind: .rateLimited,
                message: "Blitline answered HTTP 429 (too many requests)",
                retryAfter: retryAfter
            )
            return .whole(.transient(failure))
        }
        if status >= 500 || status == 408 {
            let failure = BlitlineFailure(
                kind: .serverError,
                message: "Blitline answered HTTP \(status) without an error message",
                retryAfter: retryAfter
            )
            return .whole(.transient(failure))
        }
        guard (200..<300).contains(status) else {
            let note = (300..<400).contains(status) ? " (redirects are not followed)" : ""
            let message = "Blitline answered HTTP \(status) without an error message\(note)"
            return .whole(.rejected(message: message))
        }
        return Self.matchAccepted(results, jobCount: jobCount, isBatch: isBatch)
    }

    private static func matchAccepted(_ results: JSONValue?, jobCount: Int, isBatch: Bool) -> SubmitAnswer {
        let entries: [JSONValue]? =
            switch results {
            case .array(let elements) where isBatch || elements.count == 1: elements
            case .object where !isBatch: [results!]
            default: nil
            }
        guard let entries, entries.count == jobCount else {
            let failure = BlitlineFailure(
                kind: .malformedReply,
                message: "Blitline's reply does not hold \(jobCount) job result(s)"
            )
            return .whole(.transient(failure))
        }
        return .each(entries.map(Self.outcome(of:)))
    }

    private static func outcome(of entry: JSONValue) -> SubmitOutcome {
        if let error = Self.error(in: entry) {
            return .rejected(message: "Blitline refused the job: \(error)")
        }
        let jobID: String? =
            switch entry["job_id"] {
            case .string(let id) where !id.isEmpty: id
            case .number(let lexeme): lexeme
            default: nil
            }
        guard let jobID else {
            return .transient(BlitlineFailure(kind: .malformedReply, message: "Blitline's reply has no `job_id`"))
        }
        let entries = entry["images"]?.arrayValue ?? []
        var images: [AnnouncedImage] = []
        images.reserveCapacity(entries.count)
        for image in entries {
            guard let identifier = image["image_identifier"]?.stringValue else { continue }
            images.append(AnnouncedImage(imageIdentifier: identifier, url: JobResult.destinationURL(of: image)))
        }
        return .accepted(jobID: jobID, images: images)
    }

    /// `results` of the reply (decoded a second time when it is JSON text), or the whole body
    /// when it has no `results`.
    private static func results(in body: [UInt8]) -> JSONValue? {
        guard let document = try? JSONValue(parsing: body) else { return nil }
        guard let results = document["results"] else { return document }
        if case .string(let text) = results, let inner = try? JSONValue(parsing: text) { return inner }
        return results
    }

    /// A Blitline `error` (string, or `errors` array) in an object; `nil` for anything else.
    private static func error(in value: JSONValue?) -> String? {
        guard let value, value.isObject else { return nil }
        switch value["error"] {
        case .string(let message): return message.isEmpty ? "(no message)" : message
        case .some(let other) where !other.isNull && other != .bool(false): return other.jsonString
        default: break
        }
        if value["job_id"] == nil, let errors = value["errors"]?.arrayValue, !errors.isEmpty {
            return errors.map { $0.stringValue ?? $0.jsonString }.joined(separator: "; ")
        }
        return nil
    }

    /// Parses `Retry-After` given as delta-seconds (an HTTP date gives `nil`).
    static func retryAfter(_ header: String?) -> Duration? {
        guard let header, let seconds = Int(header.filter { $0 != " " && $0 != "\t" }), seconds >= 0 else {
            return nil
        }
        return .seconds(seconds)
    }
}
