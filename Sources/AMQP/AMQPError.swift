/// Every failure the AMQP module reports.
///
/// `code` says what kind of failure it is; `replyCode` and `replyText` carry what RabbitMQ said
/// when the broker closed a channel or the connection (406 PRECONDITION_FAILED, 404 NOT_FOUND,
/// 320 CONNECTION_FORCED, …) or returned a message (312 NO_ROUTE).
public struct AMQPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidURL, connectionFailed, tlsFailed, loginRefused, connectionClosed,
                heartbeatTimeout, channelClosed, consumerCancelled, returned, nacked,
                protocolError, timeout, invalidArgument
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The URL could not be parsed.
        public static let invalidURL = Code(.invalidURL)
        /// The TCP connection or the AMQP handshake failed.
        public static let connectionFailed = Code(.connectionFailed)
        /// TLS could not be set up or the broker's certificate was not trusted.
        public static let tlsFailed = Code(.tlsFailed)
        /// The broker refused the credentials or the virtual host.
        public static let loginRefused = Code(.loginRefused)
        /// The connection is closed: by the broker, by the network, or by the application.
        public static let connectionClosed = Code(.connectionClosed)
        /// Nothing arrived from the broker for two heartbeat intervals.
        public static let heartbeatTimeout = Code(.heartbeatTimeout)
        /// The broker closed the channel (the connection stays usable).
        public static let channelClosed = Code(.channelClosed)
        /// The broker cancelled a consumer, e.g. because its queue was deleted.
        public static let consumerCancelled = Code(.consumerCancelled)
        /// A mandatory message could not be routed and came back with `basic.return`.
        public static let returned = Code(.returned)
        /// The broker refused a published message with `basic.nack`.
        public static let nacked = Code(.nacked)
        /// The broker or the library sent something this module did not expect.
        public static let protocolError = Code(.protocolError)
        /// An operation did not finish in time.
        public static let timeout = Code(.timeout)
        /// An argument cannot be sent (e.g. a header table larger than a frame).
        public static let invalidArgument = Code(.invalidArgument)

        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// The AMQP reply code the broker sent, if any.
    public var replyCode: UInt16?
    /// The broker's reply text, or a description of the failure.
    public var replyText: String

    public init(_ code: Code, replyCode: UInt16? = nil, _ replyText: String) {
        self.code = code
        self.replyCode = replyCode
        self.replyText = replyText
    }

    /// Whether the whole connection is unusable after this error (as opposed to a channel or one
    /// message). Callers reconnect on these.
    public var isConnectionError: Bool {
        switch code {
        case .connectionFailed, .tlsFailed, .loginRefused, .connectionClosed, .heartbeatTimeout,
            .protocolError:
            return true
        default:
            return false
        }
    }

    public var description: String {
        if let replyCode { return "AMQP \(code) (\(replyCode)): \(replyText)" }
        return "AMQP \(code): \(replyText)"
    }
}

extension AMQPError {
    /// The reason of a connection the application closed itself.
    public static let closedByApplication = AMQPError(
        .connectionClosed, replyCode: 200, "closed by the application")

    /// AMQP 0-9-1 reply codes that callers commonly test for.
    public enum ReplyCode {
        public static let noRoute: UInt16 = 312
        public static let connectionForced: UInt16 = 320
        public static let accessRefused: UInt16 = 403
        public static let notFound: UInt16 = 404
        public static let resourceLocked: UInt16 = 405
        public static let preconditionFailed: UInt16 = 406
    }
}
