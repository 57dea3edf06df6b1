/// One output image of a finished job.
public struct ResultImage: Sendable, Hashable {
    /// The `image_identifier` of the job's `save`, with Blitline's `_N` / `__N` page suffix if any.
    public var imageIdentifier: String
    /// Where the image was stored, whatever Blitline named the field (`s3_url`, `azure_url`,
    /// `ftp_path`, `url`); `nil` when Blitline gave none or gave something other than a string
    /// (an empty object after a failed upload).
    public var url: String?
    /// `meta.width`, when given.
    public var width: Int?
    /// `meta.height`, when given.
    public var height: Int?

    /// Creates an image.
    public init(imageIdentifier: String, url: String?, width: Int?, height: Int?) {
        self.imageIdentifier = imageIdentifier
        self.url = url
        self.width = width
        self.height = height
    }
}
