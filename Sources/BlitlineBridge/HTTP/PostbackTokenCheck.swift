/// The outcome of checking a postback's token, before its body is read.
public enum PostbackTokenCheck<Token: Sendable>: Sendable {
    /// Signed by the bridge and in date: the body may be read and handled.
    case verified(Token)
    /// Not acceptable (401 or 403): answered at once, the body never read.
    case refused(PostbackReply)
}
