/// What became of one job sent to Blitline's submit endpoint.
public enum SubmitOutcome: Sendable, Hashable {
    /// Blitline queued the job: its id and the images it announced.
    case accepted(jobID: String, images: [AnnouncedImage])
    /// Blitline refused the job (its `error` text, or a description of the HTTP status). Final:
    /// sending the same job again will not help.
    case rejected(message: String)
    /// The job may or may not have reached Blitline; sending it again later may succeed.
    case transient(BlitlineFailure)
}

/// An image that Blitline announced in its submit reply: where it will be stored once processed.
public struct AnnouncedImage: Sendable, Hashable {
    /// The `image_identifier` of the job's `save`.
    public var imageIdentifier: String
    /// The future destination URL (`s3_url`, `azure_url`, …), when Blitline gave one.
    public var url: String?

    /// Creates an announced image.
    public init(imageIdentifier: String, url: String?) {
        self.imageIdentifier = imageIdentifier
        self.url = url
    }
}

/// Blitline's answer to one submit request, which may carry several jobs.
public enum SubmitAnswer: Sendable, Hashable {
    /// One outcome per job, in the order they were sent.
    case each([SubmitOutcome])
    /// One answer for the request as a whole, naming no job: a refusal (an `error` beside no
    /// per-job results, or a non-2xx status) or a transient failure.
    case whole(SubmitOutcome)

    /// Each job's outcome, the whole request's answer repeated for every job.
    public func outcomes(jobCount: Int) -> [SubmitOutcome] {
        switch self {
        case .each(let outcomes): outcomes
        case .whole(let outcome): Array(repeating: outcome, count: jobCount)
        }
    }
}
