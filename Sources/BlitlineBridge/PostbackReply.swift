/// What the listener answers to a postback: an HTTP status and a one-line reason.
public struct PostbackReply: Sendable, Equatable {
    public var status: Int
    public var message: String

    public init(status: Int, message: String) {
        self.status = status
        self.message = message
    }
}

/// Whatever takes Blitline's postbacks off the listener.
public protocol PostbackReceiving: Sendable {
    /// Handles one postback: `token` is the last path segment of the signed postback URL.
    func receivePostback(token: String, body: [UInt8], contentType: String?) async -> PostbackReply
}
