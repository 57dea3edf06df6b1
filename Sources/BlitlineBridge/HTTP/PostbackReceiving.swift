/// Whatever takes Blitline's postbacks off the listener, in two steps: the token from the path is
/// checked before a byte of the body is read, and only a verified token's body is handled.
public protocol PostbackReceiving: Sendable {
    /// What a verified token yields and the body's handling needs (for the bridge, the request's
    /// context).
    associatedtype VerifiedToken: Sendable

    /// Checks `token`, the last path segment of the postback URL (possibly empty), without I/O
    /// and without waiting: a refusal is answered at once and the connection closed unread.
    func verify(token: Substring) -> PostbackTokenCheck<VerifiedToken>

    /// Handles the body of a postback whose token was verified; the reply is the answer.
    ///
    /// Runs in a task of its own that is cancelled when the listener's postback deadline passes;
    /// the listener has answered 503 by then and does not wait for it to return.
    func receivePostback(_ token: VerifiedToken, body: [UInt8], contentType: String?) async -> PostbackReply
}
