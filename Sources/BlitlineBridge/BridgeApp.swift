import AsyncHTTPClient
import Blitline
import Logging
import NIOPosix
import ServiceLifecycle
import Tracing

/// The whole worker: the bridge's service and its HTTP listener under one service group, with
/// graceful shutdown on SIGTERM and SIGINT within `SHUTDOWN_TIMEOUT`.
///
/// On shutdown the group stops the services in reverse order: first the bridge, which stops taking
/// requests and lets those in hand finish while the listener still answers postbacks, then the
/// listener.
public struct BridgeApp: Sendable {
    let configuration: BridgeConfiguration
    let logger: Logger
    let metricsText: @Sendable () -> String
    let onListening: @Sendable (Int) async -> Void
    let backgroundServices: [any Service]

    /// - Parameters:
    ///   - metricsText: renders the metrics for `GET /metrics` (the executable owns the backend).
    ///   - onListening: told the listener's bound port once it accepts connections.
    ///   - backgroundServices: run beside the bridge, started first and stopped last (the span
    ///     exporter, which then sends the last spans).
    public init(
        configuration: BridgeConfiguration, logger: Logger,
        metricsText: @escaping @Sendable () -> String,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in },
        backgroundServices: [any Service] = []
    ) {
        self.configuration = configuration
        self.logger = logger
        self.metricsText = metricsText
        self.onListening = onListening
        self.backgroundServices = backgroundServices
    }

    /// Runs until a graceful shutdown completes; throws on an unrecoverable start-up error.
    public func run() async throws {
        let blitline = BlitlineClient.Configuration(
            apiURL: configuration.blitlineAPIURL, pollURL: configuration.blitlinePollURL,
            submitTimeout: configuration.blitlineSubmitTimeout,
            connectionsPerHost: configuration.blitlineConnectionsPerHost)
        var httpConfiguration = blitline.httpClientConfiguration
        // With nothing to record them (`OTEL_EXPORTER_OTLP_ENDPOINT` unset), the client's span for
        // each submit was 2 % of the samples of Swift's pool in the bridge, for nothing.
        if InstrumentationSystem.tracer is NoOpTracer { httpConfiguration.tracing.tracer = nil }
        // `EVENT_LOOPS` threads for the listener, the client and the bridge's work. With one, a
        // postback, the event it becomes and the submissions it releases never wait for another
        // thread to wake: 0.88 – 0.95× of the CPU per job of two loops (deploy/BENCHMARKS.md,
        // "One event loop").
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoops)
        let httpClient = HTTPClient(eventLoopGroupProvider: .shared(loops), configuration: httpConfiguration)
        do {
            try await run(client: BlitlineClient(httpClient: httpClient, configuration: blitline, logger: logger), loops: loops)
        } catch {
            try? await httpClient.shutdown()
            try? await loops.shutdownGracefully()
            throw error
        }
        try await httpClient.shutdown()
        try await loops.shutdownGracefully()
    }

    private func run(client: BlitlineClient, loops: MultiThreadedEventLoopGroup) async throws {
        let metrics = BridgeMetrics()
        let topology = configuration.topology
        let session = BrokerSession()
        let submitter = JobSubmitter(client: client)
        let postbackKeys = PostbackToken.Keys(secrets: configuration.postbackSecrets, jobTimeout: configuration.jobTimeout)
        let ledger = OutcomeLedger(
            window: OutcomeLedger.window(jobTimeout: configuration.jobTimeout, timeoutGrace: configuration.timeoutGrace),
            logger: logger)
        let bridge = BridgeService(
            configuration: configuration, topology: topology, session: session, ledger: ledger,
            submitter: submitter,
            requests: RequestProcessor(
                configuration: configuration,
                rules: RequestRules(
                    maxRequestBytes: configuration.maxRequestBytes,
                    defaultApplicationID: configuration.blitlineApplicationID,
                    submitMaxAttempts: configuration.submitMaxAttempts, maxRedeliveries: configuration.maxRedeliveries,
                    jobTimeout: configuration.jobTimeout),
                submitter: submitter,
                postbackKeys: configuration.postbackSecrets.isEmpty ? nil : postbackKeys,
                metrics: metrics, logger: logger, isSettled: { ledger.isSettled($0) }),
            timeouts: TimeoutProcessor(configuration: configuration, ledger: ledger, metrics: metrics, logger: logger),
            polls: PollProcessor(
                client: client, rateLimiter: PollRateLimiter(ratePerSecond: configuration.pollRate * PollProcessor.rateMargin),
                metrics: metrics, logger: logger),
            eventLoop: loops.next(), metrics: metrics, logger: logger)
        let listener = HTTPListener(
            host: configuration.listenHost, port: configuration.listenPort,
            probeHost: configuration.healthHost, probePort: configuration.healthPort,
            postbackPathPrefix: configuration.postbackBaseURL.map(Self.path(of:)),
            receiver: PostbackHandler(
                keys: postbackKeys, session: session, metrics: metrics, logger: logger),
            isReady: { session.isReady }, metricsText: metricsText, limits: configuration.listenerLimits,
            eventLoops: loops, logger: logger, onRunning: onListening,
            onShed: { metrics.postback($0 == .overloaded ? .overloaded : .timedOut) })

        var group = ServiceGroupConfiguration(
            services: backgroundServices.map { .init(service: $0) } + [
                .init(service: listener),
                .init(service: bridge, successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        group.maximumGracefulShutdownDuration = configuration.shutdownTimeout
        try await ServiceGroup(configuration: group).run()
    }

    /// The path of the postback base URL ("" for none); the settings keep the URL without a
    /// trailing slash, query or fragment.
    package static func path(of url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return "" }
        return String(url[schemeEnd.upperBound...].drop { $0 != "/" })
    }
}
