import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The embedded HTTP listener: Blitline's postbacks, `/healthz`, `/readyz` and `/metrics`.
///
/// Runs as a `Service`: it serves until its graceful shutdown is triggered, then stops accepting
/// connections, finishes the requests in hand and returns. A `ServiceGroup` shuts services down in
/// reverse order, so a listener placed after the services its receiver needs keeps answering
/// postbacks while those drain.
///
/// | route | answer |
/// | --- | --- |
/// | `POST {prefix}/postback/{token}` | the receiver's status and message (`text/plain`); 413 past `maxPostbackBytes` |
/// | `GET /healthz` | 200 `ok` |
/// | `GET /readyz` | 200 `ready`, or 503 `not ready: …` |
/// | `GET /metrics` | 200, Prometheus text format 0.0.4 |
/// | anything else | 404 (405 for a known path with another method) |
public struct HTTPListener: Service {
    /// The longest a postback may take, from its first byte to the answer: well within the 15 s
    /// Blitline waits, so that a slow broker yields a 503 (and Blitline's retry) instead of
    /// Blitline's own timeout.
    static let postbackDeadline: Duration = .seconds(10)
    /// Connections with nothing to read or write for this long are closed.
    static let idleTimeout: TimeAmount = .seconds(30)

    let host: String
    let port: Int
    let postbackPathPrefix: String?
    let receiver: any PostbackReceiving
    let isReady: @Sendable () -> Bool
    let metricsText: @Sendable () -> String
    let maxPostbackBytes: Int
    let logger: Logger
    let onRunning: @Sendable (Int) async -> Void

    /// Creates a listener; nothing is bound until ``run()``.
    ///
    /// - Parameters:
    ///   - host: Address to bind, e.g. `0.0.0.0` or `::`.
    ///   - port: Port to bind; 0 picks a free one (see `onRunning`).
    ///   - postbackPathPrefix: `nil` serves no postback route (polling mode); otherwise `""` or a
    ///     path such as `/blitline` (no trailing slash) under which `/postback/{token}` is served.
    ///   - receiver: Handles each postback; its reply is the answer.
    ///   - isReady: Whether `/readyz` answers 200.
    ///   - metricsText: The body of `/metrics`.
    ///   - maxPostbackBytes: Larger postback bodies are answered 413 without being read. Default 8 MiB.
    ///   - logger: Receives the server's own lines and one debug line per postback (without body
    ///     or token).
    ///   - onRunning: Called with the bound port once connections are accepted.
    public init(
        host: String,
        port: Int,
        postbackPathPrefix: String?,
        receiver: any PostbackReceiving,
        isReady: @escaping @Sendable () -> Bool,
        metricsText: @escaping @Sendable () -> String,
        maxPostbackBytes: Int = 8 << 20,
        logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.postbackPathPrefix = postbackPathPrefix
        self.receiver = receiver
        self.isReady = isReady
        self.metricsText = metricsText
        self.maxPostbackBytes = maxPostbackBytes
        self.logger = logger
        self.onRunning = onRunning
    }

    /// Serves until graceful shutdown (or cancellation), then returns once the requests in hand
    /// are answered. Throws ``StartFailure`` if the address cannot be bound.
    public func run() async throws {
        let onRunning = self.onRunning
        let running = Mutex(false)
        let application = Application(
            router: makeRouter(),
            server: .http1(configuration: .init(idleTimeout: Self.idleTimeout)),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                running.withLock { $0 = true }
                await onRunning(channel.localAddress?.port ?? 0)
            },
            logger: logger
        )
        do {
            try await application.run()
        } catch where !running.withLock({ $0 }) {
            throw StartFailure(address: address, reason: "\(error)")
        }
    }

    /// `host:port`, with an IPv6 host in brackets.
    var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    func makeRouter() -> Router<Context> {
        let router = Router(context: Context.self)
        router.get("/healthz") { _, _ in Self.text(.ok, "ok") }
        router.get("/readyz") { _, _ in
            self.isReady()
                ? Self.text(.ok, "ready")
                : Self.text(.serviceUnavailable, "not ready: the broker is not connected or the topology not declared")
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: self.metricsText()))
            )
        }
        if let postbackPathPrefix {
            router.post("\(postbackPathPrefix)/postback/:token") { request, context in
                await self.postback(request, context: context)
            }
        }
        return router
    }

    private func postback(_ request: Request, context: Context) async -> Response {
        let started = ContinuousClock.now
        let response = await answerPostback(request, context: context)
        logger.debug(
            "postback answered",
            metadata: [
                "http.status": "\(response.status.code)",
                "duration_ms": "\((ContinuousClock.now - started) / .milliseconds(1))",
            ]
        )
        return response
    }

    private func answerPostback(_ request: Request, context: Context) async -> Response {
        guard let token = context.parameters.get("token"), !token.isEmpty else {
            return Self.text(.notFound, "no postback token")
        }
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxPostbackBytes {
            return tooLarge(context)
        }
        let contentType = request.headers[.contentType]
        let receiver = self.receiver
        let limit = self.maxPostbackBytes
        let outcome = await withTaskGroup(of: PostbackOutcome.self) { group in
            group.addTask {
                var body: [UInt8] = []
                do {
                    for try await buffer in request.body {
                        guard body.count + buffer.readableBytes <= limit else { return .tooLarge }
                        body.append(contentsOf: buffer.readableBytesView)
                    }
                } catch {
                    return .bodyFailed
                }
                return .replied(await receiver.receivePostback(token: token, body: body, contentType: contentType))
            }
            group.addTask {
                try? await Task.sleep(for: Self.postbackDeadline)
                return .timedOut
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        switch outcome {
        case .replied(let reply):
            guard (200...599).contains(reply.status) else {
                return Self.text(.internalServerError, "the postback could not be handled")
            }
            return Self.text(HTTPResponse.Status(code: reply.status), reply.message)
        case .tooLarge:
            return tooLarge(context)
        case .bodyFailed:
            return Self.text(.badRequest, "the body could not be read")
        case .timedOut:
            return Self.text(.serviceUnavailable, "the postback could not be handled in time; retry")
        }
    }

    /// 413, and the connection closes once it is written, so that the rest of the body is never read.
    private func tooLarge(_ context: Context) -> Response {
        context.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        var response = Self.text(.contentTooLarge, "the postback is larger than \(maxPostbackBytes) bytes")
        response.headers[.connection] = "close"
        return response
    }

    private static func text(_ status: HTTPResponse.Status, _ message: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: message))
        )
    }
}

extension HTTPListener: CustomStringConvertible {
    /// The address only: service-lifecycle logs services by description, and the receiver may
    /// hold secrets.
    public var description: String {
        "HTTPListener(\(address), postbacks: \(postbackPathPrefix.map { "\($0)/postback/{token}" } ?? "off"))"
    }
}

extension HTTPListener {
    /// The listener could not start, typically because the address is in use or not local.
    public struct StartFailure: Error, Sendable, CustomStringConvertible {
        /// The address that could not be bound, as `host:port`.
        public var address: String
        /// What the system said.
        public var reason: String

        /// `cannot listen on 0.0.0.0:8080: <reason>`.
        public var description: String { "cannot listen on \(address): \(reason)" }
    }

    /// The request context: Hummingbird's basics plus the channel, which a 413 closes.
    struct Context: Hummingbird.RequestContext {
        var coreContext: CoreRequestContextStorage
        let channel: any Channel

        init(source: ApplicationRequestContextSource) {
            self.coreContext = .init(source: source)
            self.channel = source.channel
        }
    }

    private enum PostbackOutcome: Sendable {
        case replied(PostbackReply)
        case tooLarge
        case bodyFailed
        case timedOut
    }
}
