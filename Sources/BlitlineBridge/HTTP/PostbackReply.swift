/// What the listener answers to a postback: an HTTP status and a one-line reason.
public struct PostbackReply: Sendable, Equatable {
    /// The HTTP status, 200 to 599.
    public var status: Int
    /// The answer's `text/plain` body: one line, never a secret.
    public var message: String

    /// A reply with `status` and `message`.
    public init(status: Int, message: String) {
        self.status = status
        self.message = message
    }
}
