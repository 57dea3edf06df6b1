/// A transient failure talking to Blitline (submit or poll): worth retrying later.
public struct BlitlineFailure: Error, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Code: String, Hashable, Sendable {
            case connection, timeout, rateLimited = "rate_limited", serverError = "server_error",
                malformedReply = "malformed_reply", cancelled
        }

        private let code: Code

        /// The connection could not be made or broke (refused, reset, DNS, TLS).
        public static let connection = Kind(code: .connection)
        /// No complete answer within the configured timeout.
        public static let timeout = Kind(code: .timeout)
        /// HTTP 429.
        public static let rateLimited = Kind(code: .rateLimited)
        /// HTTP 5xx (or 408) without a Blitline `error`.
        public static let serverError = Kind(code: .serverError)
        /// A success status with a body that is not the reply Blitline documents.
        public static let malformedReply = Kind(code: .malformedReply)
        /// The calling task was cancelled.
        public static let cancelled = Kind(code: .cancelled)

        /// A stable snake_case name, usable as a metric label.
        public var description: String { self.code.rawValue }
    }

    /// The kind of failure.
    public let kind: Kind
    /// What happened, for logs and events; never contains the application id or a request body.
    public let message: String
    /// How long Blitline asked the caller to wait (HTTP 429 `Retry-After`), when it said.
    public let retryAfter: Duration?

    /// Creates a failure.
    public init(kind: Kind, message: String, retryAfter: Duration? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { self.message }
}
