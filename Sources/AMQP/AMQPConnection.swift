import Logging

/// A connection to a RabbitMQ broker over librabbitmq.
///
/// Each connection owns one thread that does all of librabbitmq's I/O for it, so the API is safe
/// from any task. Heartbeats are kept whether the application consumes, only publishes, or is
/// idle; a peer that goes silent is detected within about two heartbeats and every pending call
/// then fails. The connection does not reconnect by itself: `closed()` says why it ended, and
/// opening a new one is cheap.
///
/// Publish and consume on separate connections: the broker stops reading from a connection that
/// publishes during a resource alarm.
///
/// Keep the connection while you use its channels, consumers and deliveries: once the last
/// reference to it goes away, it is closed as by `close()` (without waiting), and its thread,
/// socket and memory are freed.
public final class AMQPConnection: Sendable {
    let loop: ConnectionLoop

    private init(loop: ConnectionLoop) { self.loop = loop }

    deinit {
        // The owner thread holds the loop, never this object: it runs until this close is done.
        loop.requestClose(.closedByApplication)
    }

    /// Connects and logs in; throws `AMQPError` (`connectionFailed`, `tlsFailed`, `loginRefused`).
    public static func connect(
        _ configuration: Configuration, logger: Logger = Logger(label: "amqp")
    ) async throws -> AMQPConnection {
        let loop = ConnectionLoop(configuration: configuration, logger: logger)
        try await loop.start()
        return AMQPConnection(loop: loop)
    }

    /// Connects to an `amqp://` or `amqps://` URL.
    public static func connect(url: String, logger: Logger = Logger(label: "amqp")) async throws -> AMQPConnection {
        try await connect(Configuration(url: url), logger: logger)
    }

    /// Opens a new channel. Channels are cheap; a channel the broker closes stays closed.
    public func openChannel() async throws -> AMQPChannel {
        try await loop.perform { loop throws(AMQPError) in try loop.openChannel() }
    }

    /// Closes the connection (sending `connection.close`) and fails whatever is still pending.
    public func close() async {
        loop.requestClose(.closedByApplication)
        _ = await loop.closed()
    }

    /// Waits until the connection has closed, for whatever reason, and returns that reason.
    public func closed() async -> AMQPError { await loop.closed() }

    /// Why the connection closed, or `nil` while it is open.
    public var closeReason: AMQPError? { loop.closeReason }

    /// Whether the broker has blocked publishing (a memory or disk alarm). Publishes wait meanwhile.
    public var isBlocked: Bool { loop.isBlocked }

    /// Whether the broker blocks publishing: the current state first, then every change (the
    /// broker's `connection.blocked` and `connection.unblocked`). The sequence ends when the
    /// connection closes; a slow reader sees at least the latest states.
    public func blockedChanges() -> AsyncStream<Bool> { loop.blockedChanges() }

    /// The negotiated largest frame in bytes, envelope included: what
    /// `AMQPProperties.validateForPublish(frameMax:)` needs to check a message for this connection.
    public var frameMax: Int {
        get async throws { try await loop.perform { $0.frameMax } }
    }

    /// The negotiated heartbeat interval.
    public var heartbeat: Duration {
        get async throws { try await loop.perform { $0.heartbeat } }
    }
}
