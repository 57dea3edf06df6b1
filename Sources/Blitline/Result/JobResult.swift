/// The outcome of a Blitline job, as a postback or a long poll reports it.
///
/// Decoded leniently: every shape Blitline has used over time (errors inside `images[]`, `results`
/// as JSON text, `original_meta` null or empty, non-string URLs, unknown fields) gives the same
/// model.
public struct JobResult: Sendable, Hashable {
    /// Blitline's job id.
    public var jobID: String
    /// The source image's size from `original_meta`, when it has both `width` and `height`.
    public var original: ImageSize?
    /// The images produced, in Blitline's order.
    public var images: [ResultImage]
    /// Error messages, from `errors[]` and from legacy `error` entries inside `images[]`.
    public var errors: [String]
    /// Identifiers of images that were not produced, without duplicates.
    public var failedImageIdentifiers: [String]
    /// The `results` object as received.
    public var originalJSON: JSONValue

    /// Creates a result.
    public init(
        jobID: String,
        original: ImageSize? = nil,
        images: [ResultImage] = [],
        errors: [String] = [],
        failedImageIdentifiers: [String] = [],
        originalJSON: JSONValue = .object([])
    ) {
        self.jobID = jobID
        self.original = original
        self.images = images
        self.errors = errors
        self.failedImageIdentifiers = failedImageIdentifiers
        self.originalJSON = originalJSON
    }

    /// Whether the job succeeded: Blitline reported no errors and no failed image identifiers.
    public var isCompleted: Bool {
        self.errors.isEmpty && self.failedImageIdentifiers.isEmpty
    }
}
