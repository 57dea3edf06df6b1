extension JobResult {
    /// Decodes a postback body.
    ///
    /// Accepts JSON `{"results": {…}}` (Blitline with `v` above 1.17) and the legacy form body
    /// `results=<JSON text>`; which one is decided by `contentType`, and when that is missing or
    /// not a form type, a body that is not JSON but looks like a form is read as one.
    public static func decode(postbackBody body: [UInt8], contentType: String?) throws(ResultDecodingError) -> JobResult {
        guard !body.isEmpty else { throw .emptyBody }
        if FormEncoding.isFormContentType(contentType) {
            return try self.decodeForm(body)
        }
        do {
            return try self.decode(document: try JSONValue(parsing: body))
        } catch let error as JSONParsingError {
            if body.starts(with: "results=".utf8) || FormEncoding.value(of: "results", in: body) != nil {
                return try self.decodeForm(body)
            }
            throw .notJSON(error)
        } catch {
            throw error as! ResultDecodingError
        }
    }

    /// Decodes a long-poll body (`GET /listen/{job_id}`): JSON whatever the content type says,
    /// with `results` either an object or JSON text holding one.
    public static func decode(pollBody body: [UInt8]) throws(ResultDecodingError) -> JobResult {
        guard !body.isEmpty else { throw .emptyBody }
        let document: JSONValue
        do {
            document = try JSONValue(parsing: body)
        } catch {
            throw .notJSON(error)
        }
        return try self.decode(document: document)
    }

    /// Decodes a result document: `{"results": …}` or, leniently, the `results` object itself.
    public static func decode(document: JSONValue) throws(ResultDecodingError) -> JobResult {
        var results = document["results"] ?? document
        if case .string(let text) = results {
            do {
                results = try JSONValue(parsing: text)
            } catch {
                throw .notJSON(error)
            }
            if let inner = results["results"] { results = inner }
        }
        if case .array(let elements) = results, elements.count == 1 {
            results = elements[0]
        }
        guard results.isObject else { throw .missingResults }
        return try self.decode(results: results)
    }

    private static func decodeForm(_ body: [UInt8]) throws(ResultDecodingError) -> JobResult {
        guard let text = FormEncoding.value(of: "results", in: body) else { throw .missingResults }
        do {
            return try self.decode(document: .object([.init(key: "results", value: try JSONValue(parsing: text))]))
        } catch let error as JSONParsingError {
            throw .notJSON(error)
        } catch {
            throw error as! ResultDecodingError
        }
    }

    private static func decode(results: JSONValue) throws(ResultDecodingError) -> JobResult {
        guard let jobID = Self.text(results["job_id"]) ?? Self.text(results["group_completion_job_id"]) else {
            throw .missingJobID
        }
        var result = JobResult(jobID: jobID, originalJSON: results)
        if let meta = results["original_meta"], let width = Self.integer(meta["width"]),
            let height = Self.integer(meta["height"])
        {
            result.original = ImageSize(width: width, height: height)
        }
        result.appendErrors(results["errors"])
        if let error = results["error"]?.stringValue, error != "true" {
            result.errors.append(error)
        }
        result.appendFailedIdentifiers(results["failed_image_identifiers"])
        let entries = (results["images"] ?? results["image_results"])?.arrayValue ?? []
        result.images.reserveCapacity(entries.count)
        for entry in entries {
            result.appendImageEntry(entry)
        }
        result.failedImageIdentifiers = Self.firstOccurrences(result.failedImageIdentifiers)
        return result
    }

    /// `identifiers` without repeats, in the order of their first occurrence; linear, so that a
    /// body of 8 MiB of identifiers costs no more than reading it.
    static func firstOccurrences(_ identifiers: [String]) -> [String] {
        var seen = Set<String>(minimumCapacity: identifiers.count)
        return identifiers.filter { seen.insert($0).inserted }
    }

    private mutating func appendImageEntry(_ entry: JSONValue) {
        guard entry.isObject else { return }
        let legacyError = entry["error"]
        if legacyError != nil {
            self.appendErrors(legacyError)
        }
        self.appendFailedIdentifiers(entry["failed_image_identifiers"])
        guard let identifier = Self.text(entry["image_identifier"]) else { return }
        if legacyError != nil {
            self.appendFailedIdentifiers(.array([.string(identifier)]))
            return
        }
        let url = Self.destinationURL(of: entry)
        let meta = entry["meta"]
        self.images.append(
            ResultImage(
                imageIdentifier: identifier,
                url: url,
                width: Self.integer(meta?["width"]),
                height: Self.integer(meta?["height"])
            )
        )
    }

    private mutating func appendErrors(_ value: JSONValue?) {
        switch value {
        case .string(let message) where !message.isEmpty: self.errors.append(message)
        case .array(let elements): self.errors += elements.compactMap { Self.text($0) }.filter { !$0.isEmpty }
        default: break
        }
    }

    private mutating func appendFailedIdentifiers(_ value: JSONValue?) {
        let identifiers: [String] =
            switch value {
            case .string(let identifier): [identifier]
            case .array(let elements): elements.compactMap { Self.text($0) }
            default: []
            }
        self.failedImageIdentifiers += identifiers
    }

    /// An image entry's destination, whatever Blitline named it; `nil` when absent, empty or not
    /// a string (an empty object after a failed upload).
    static func destinationURL(of entry: JSONValue) -> String? {
        ["s3_url", "azure_url", "ftp_path", "url"].lazy
            .compactMap { entry[$0]?.stringValue }
            .first { !$0.isEmpty }
    }

    private static func text(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let string): string
        case .number(let lexeme): lexeme
        default: nil
        }
    }

    private static func integer(_ value: JSONValue?) -> Int? {
        switch value {
        case .number: value?.intValue
        case .string(let string): Int(string)
        default: nil
        }
    }
}
