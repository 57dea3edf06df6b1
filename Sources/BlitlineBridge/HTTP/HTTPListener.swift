import AsyncSupport
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The embedded HTTP listener: Blitline's postbacks, `/healthz`, `/readyz` and `/metrics`, and
/// optionally a second listener for the probes alone.
///
/// Runs as a `Service`: it serves until its graceful shutdown is triggered, then stops accepting
/// connections, finishes the requests in hand and returns. A `ServiceGroup` shuts services down in
/// reverse order, so a listener placed after the services its receiver needs keeps answering
/// postbacks while those drain.
///
/// It faces the internet (README, "HTTP listener"), so everything a client can make it hold is
/// bounded by ``Limits``: connections, the time to send a head and a body, postback bytes held,
/// postbacks in hand. A postback's token is checked before its body is read.
///
/// | route | answer |
/// | --- | --- |
/// | `POST {prefix}/postback/{token}` | the receiver's status and message (`text/plain`); 401/403 for a refused token, at once, the body unread; 413 past `maxPostbackBytes`; 503 past the deadline or a limit |
/// | `GET /healthz` | 200 `ok` |
/// | `GET /readyz` | 200 `ready`, or 503 `not ready: …` |
/// | `GET /metrics` | 200, Prometheus text format 0.0.4 |
/// | anything else | 404 (405 for a known path with another method) |
///
/// The probe listener, when configured, serves `/healthz`, `/readyz` and `/metrics` only, with
/// its own connection limit, so that probes never queue behind postbacks.
public struct HTTPListener: Service {
    let host: String
    let port: Int
    let probeHost: String?
    let probePort: Int
    let postbackPathPrefix: String?
    let receiver: any PostbackReceiving
    let isReady: @Sendable () -> Bool
    let metricsText: @Sendable () -> String
    let limits: Limits
    let eventLoops: any EventLoopGroup
    let logger: Logger
    let onRunning: @Sendable (Int) async -> Void
    let onProbesRunning: @Sendable (Int) async -> Void
    let onShed: @Sendable (Shed) -> Void
    /// What postbacks in hand hold, over all connections.
    let allowances: PostbackAllowances

    /// Postback body bytes held and postbacks being handled, including those answered at the
    /// deadline whose work goes on. A postback's task holds these, not a copy of the listener.
    struct PostbackAllowances: Sendable {
        let bufferedBytes: Allowance
        let pendingPostbacks: Allowance

        /// Gives back a postback's place among those in hand and the body bytes it `held`.
        func release(postbackHolding held: Int) {
            bufferedBytes.giveBack(held)
            pendingPostbacks.giveBack(1)
        }
    }

    /// Creates a listener; nothing is bound until ``run()``.
    ///
    /// - Parameters:
    ///   - host: Address to bind, e.g. `0.0.0.0` or `::`.
    ///   - port: Port to bind; 0 picks a free one (see `onRunning`).
    ///   - probeHost: Address of a separate listener for `/healthz`, `/readyz` and `/metrics`;
    ///     `nil` serves them on the main listener only.
    ///   - probePort: Port of the probe listener.
    ///   - postbackPathPrefix: `nil` serves no postback route (polling mode); otherwise `""` or a
    ///     path such as `/blitline` (no trailing slash) under which `/postback/{token}` is served.
    ///   - receiver: Checks each postback's token, then handles its body; its reply is the answer.
    ///   - isReady: Whether `/readyz` answers 200.
    ///   - metricsText: The body of `/metrics`.
    ///   - limits: What clients may have; see ``Limits``.
    ///   - eventLoops: Where the connections are accepted, read, answered and their postbacks
    ///     handled.
    ///   - logger: Receives the server's own lines and one debug line per postback (without body
    ///     or token).
    ///   - onRunning: Called with the bound port once connections are accepted.
    ///   - onProbesRunning: Called with the probe listener's bound port once it accepts them.
    ///   - onShed: Told of each verified postback answered 503 by the listener itself, e.g. to
    ///     count it; the receiver counts the rest.
    public init(
        host: String,
        port: Int,
        probeHost: String? = nil,
        probePort: Int = 0,
        postbackPathPrefix: String?,
        receiver: any PostbackReceiving,
        isReady: @escaping @Sendable () -> Bool,
        metricsText: @escaping @Sendable () -> String,
        limits: Limits = Limits(),
        eventLoops: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in },
        onProbesRunning: @escaping @Sendable (Int) async -> Void = { _ in },
        onShed: @escaping @Sendable (Shed) -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.probeHost = probeHost
        self.probePort = probePort
        self.postbackPathPrefix = postbackPathPrefix
        self.receiver = receiver
        self.isReady = isReady
        self.metricsText = metricsText
        self.limits = limits
        self.eventLoops = eventLoops
        self.logger = logger
        self.onRunning = onRunning
        self.onProbesRunning = onProbesRunning
        self.onShed = onShed
        self.allowances = PostbackAllowances(
            bufferedBytes: Allowance(limit: limits.maxBufferedBytes),
            pendingPostbacks: Allowance(limit: limits.maxPendingPostbacks))
    }

    /// Serves until graceful shutdown (or cancellation), then returns once the requests in hand
    /// are answered. Throws ``StartFailure`` if an address cannot be bound.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await serve(
                    host: host, port: port, receiver: receiver, servesPostbacks: postbackPathPrefix != nil,
                    maxConnections: limits.maxConnections, onRunning: onRunning)
            }
            if let probeHost {
                group.addTask {
                    try await serve(
                        host: probeHost, port: probePort, receiver: receiver, servesPostbacks: false,
                        maxConnections: limits.maxProbeConnections, onRunning: onProbesRunning)
                }
            }
            try await group.waitForAll()
        }
    }

    /// Binds `host:port` and serves connections until a graceful shutdown, which stops accepting
    /// and returns once every connection has closed (each after the answer in hand); cancelled, it
    /// does the same and cuts what is still open ``cancellationGrace`` later.
    private func serve<Receiver: PostbackReceiving>(
        host: String, port: Int, receiver: Receiver, servesPostbacks: Bool, maxConnections: Int,
        onRunning: @escaping @Sendable (Int) async -> Void
    ) async throws {
        let connections = Connections(
            listener: self, receiver: receiver, servesPostbacks: servesPostbacks,
            deadlines: RequestDeadlines(headerTimeout: limits.headerTimeout, bodyTimeout: limits.bodyTimeout))
        let server: any Channel
        do {
            server = try await ServerBootstrap(group: eventLoops)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ConnectionGate(maxConnections: maxConnections))
                    }
                }
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer(connections.setUp)
                .bind(host: host, port: port).get()
        } catch {
            throw StartFailure(address: Self.address(host, port), reason: "\(error)")
        }
        let loop = server.eventLoop
        let gate = try await loop.submit {
            NIOLoopBound(try server.pipeline.syncOperations.handler(type: ConnectionGate.self), eventLoop: loop)
        }.get()
        // The line HummingbirdCore's server wrote before, which operators and tests may look for.
        logger.info("Server started and listening on \(Self.address(host, server.localAddress?.port ?? port))")
        await onRunning(server.localAddress?.port ?? 0)
        let drained = loop.makePromise(of: Void.self)
        let quiesce: @Sendable () -> Void = { loop.execute { gate.value.quiesce(drained: drained) } }
        // A server socket closed by anything else drains all the same, rather than leave this
        // waiting for a shutdown.
        server.closeFuture.whenComplete { _ in quiesce() }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await drained.futureResult.get()
            } onGracefulShutdown: {
                quiesce()
            }
        } onCancel: {
            quiesce()
            loop.scheduleTask(in: TimeAmount(Self.cancellationGrace)) { gate.value.cutAll() }
        }
    }

    /// How long a cancelled listener lets the requests in hand finish before cutting them.
    static let cancellationGrace: Duration = .seconds(1)

    /// `host:port`, with an IPv6 host in brackets.
    var address: String { Self.address(host, port) }

    static func address(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

extension HTTPListener: CustomStringConvertible {
    /// The addresses only: service-lifecycle logs services by description, and the receiver may
    /// hold secrets.
    public var description: String {
        let probes = probeHost.map { ", probes: \(Self.address($0, probePort))" } ?? ""
        return "HTTPListener(\(address)\(probes), postbacks: \(postbackPathPrefix.map { "\($0)/postback/{token}" } ?? "off"))"
    }
}

extension HTTPListener {
    /// Why the listener answered a verified postback 503 without the receiver's reply.
    public enum Shed: String, Sendable {
        /// Past `LISTEN_MAX_PENDING_POSTBACKS` or `LISTEN_MAX_BUFFERED_BYTES`.
        case overloaded
        /// Past the postback deadline; the handling was cancelled.
        case timedOut = "timed_out"
    }

    /// The listener could not start, typically because the address is in use or not local.
    public struct StartFailure: Error, Sendable, CustomStringConvertible {
        /// The address that could not be bound, as `host:port`.
        public var address: String
        /// What the system said.
        public var reason: String

        /// `cannot listen on 0.0.0.0:8080: <reason>`.
        public var description: String { "cannot listen on \(address): \(reason)" }
    }

    /// How each accepted connection is set up: one ``HTTPConnectionHandler``, which reads its
    /// requests, keeps its deadlines and writes its answers.
    struct Connections<Receiver: PostbackReceiving>: Sendable {
        let listener: HTTPListener
        let receiver: Receiver
        let servesPostbacks: Bool
        let deadlines: RequestDeadlines

        @Sendable func setUp(_ channel: any Channel) -> EventLoopFuture<Void> {
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    HTTPConnectionHandler(
                        listener: listener, receiver: receiver, servesPostbacks: servesPostbacks, deadlines: deadlines))
            }
        }
    }
}
