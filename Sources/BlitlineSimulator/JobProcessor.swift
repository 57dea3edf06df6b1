import Blitline

/// Turns an accepted job into what Blitline would report: the images its submit reply announces,
/// and the `results` document once it is "processed". Pure; no I/O.
enum JobProcessor {
    /// One `save` found in the function tree, with the size of the image it stores.
    struct Output {
        var identifier: String
        var urlKey: String
        var url: String
        var size: ImageSize?
    }

    /// The images a submit reply announces: every `save` (nested ones too) that is not skipped.
    static func announcedImages(of job: JSONValue, jobID: String) -> [Output] {
        var outputs: [Output] = []
        var unknown: String?
        Self.walk(job["functions"], size: nil, jobID: jobID, job: job, outputs: &outputs, unknown: &unknown)
        return outputs
    }

    /// The `results` document of a finished job whose source measured `source` (or failed to load
    /// with a message).
    static func results(of job: SimulatedJob, source: Result<ImageSize, SourceError>) -> JSONValue {
        let identifiers = Self.announcedImages(of: job.json, jobID: job.jobID).map(\.identifier)
        if job.json["src"] == nil {
            return Self.failure(job, original: nil, message: "No source for processing", failed: identifiers)
        }
        guard let functions = job.json["functions"]?.arrayValue, !functions.isEmpty else {
            return Self.failure(
                job,
                original: nil,
                message: "Functions are required, or we're aren't doing anything (null op)",
                failed: identifiers
            )
        }
        let size: ImageSize
        switch source {
        case .failure(let error):
            return Self.failure(job, original: nil, message: "Image processing failed. \(error.message)", failed: identifiers)
        case .success(let measured):
            size = measured
        }
        var outputs: [Output] = []
        var unknown: String?
        Self.walk(job.json["functions"], size: size, jobID: job.jobID, job: job.json, outputs: &outputs, unknown: &unknown)
        if let unknown {
            return Self.failure(
                job,
                original: size,
                message: "Image processing failed. Unknown function named '\(unknown)'",
                failed: identifiers
            )
        }
        let images: [JSONValue] = outputs.map { output in
            [
                "image_identifier": .string(output.identifier),
                output.urlKey: .string(output.url),
                "meta": Self.meta(output.size),
            ]
        }
        return ["original_meta": Self.meta(size), "images": .array(images), "job_id": .string(job.jobID)]
    }

    private static func failure(_ job: SimulatedJob, original: ImageSize?, message: String, failed: [String]) -> JSONValue {
        let failedJSON = JSONValue.array(failed.map { .string($0) })
        let originalMeta: JSONValue = original.map { Self.meta($0) } ?? .null
        if job.liftsErrors {
            return [
                "original_meta": originalMeta, "images": [], "job_id": .string(job.jobID),
                "errors": [.string(message)], "failed_image_identifiers": failedJSON,
            ]
        }
        let images: JSONValue =
            job.postsJSON
            ? [["error": .string(message), "failed_image_identifiers": failedJSON]]
            : [["error": .string(message)], ["failed_image_identifiers": failedJSON]]
        return ["original_meta": originalMeta, "images": images, "job_id": .string(job.jobID)]
    }

    private static func meta(_ size: ImageSize?) -> JSONValue {
        guard let size else { return [:] }
        return ["width": .number(size.width), "height": .number(size.height)]
    }

    private static func walk(
        _ functions: JSONValue?,
        size: ImageSize?,
        jobID: String,
        job: JSONValue,
        outputs: inout [Output],
        unknown: inout String?
    ) {
        for function in functions?.arrayValue ?? [] {
            let name = function["name"]?.stringValue ?? ""
            if unknown == nil, !FunctionCatalog.isKnown(name) { unknown = name }
            let output = size.map { ImageGeometry.apply(name, params: function["params"], to: $0) }
            if let save = function["save"], save["skip"]?.boolValue != true,
                let identifier = save["image_identifier"]?.stringValue
            {
                let (key, url) = Destination.url(for: save, identifier: identifier, jobID: jobID, job: job)
                outputs.append(Output(identifier: identifier, urlKey: key, url: url, size: output))
            }
            Self.walk(function["functions"], size: output, jobID: jobID, job: job, outputs: &outputs, unknown: &unknown)
        }
    }
}

/// Why a source image could not be measured, as Blitline words it.
struct SourceError: Error {
    let message: String
}
