import AsyncHTTPClient
import AsyncSupport
import Blitline
import Hummingbird
import Logging
import NIOCore

/// A local Blitline: `POST /job`, processing with computed image sizes, postbacks with Blitline's
/// retry schedule, `GET /listen/{job_id}` long polls, and fault injection through `/_control`.
public struct BlitlineSimulator: Sendable {
    /// How the simulator listens and behaves.
    public struct Configuration: Sendable {
        /// Address to bind. Default `127.0.0.1`.
        public var host: String
        /// Port to bind; 0 picks a free one (learn it from `onServerRunning`). Default 8090.
        public var port: Int
        /// Time from acceptance to the end of "processing". Default 200 ms.
        public var processingDelay: Duration
        /// Multiplies the postback retry delays. Default 1.
        public var retrySpeedFactor: Double
        /// The waits before each retry of a failed postback, before `retrySpeedFactor`: one retry
        /// per element. Default Blitline's 1 s, 3 s, 15 s, 10 min.
        public var postbackRetryDelays: [Duration]
        /// The longest a postback attempt waits for an answer (Blitline's limit). Default 15 s.
        public var postbackTimeout: Duration
        /// How long `GET /listen/{job_id}` is held open before answering an empty 200. Default 30 s.
        public var pollWait: Duration
        /// Polls per second allowed per application id; more get HTTP 429. Default 5.
        public var pollRate: Double
        /// How long a result stays in the poll cache after the job ends. Default 5 minutes.
        public var resultRetention: Duration
        /// Application ids accepted; `nil` accepts any non-empty id. Default `nil`.
        public var allowedApplicationIDs: Set<String>?
        /// Job JSON longer than this many characters is refused. Default 250,000 (Blitline's limit).
        public var maxJobCharacters: Int
        /// Faults in force at start.
        public var faults: FaultPlan
        /// Postbacks sent at once, over as many keep-alive connections; the rest wait their turn
        /// (the postback timeout runs from an attempt's sending). Default 32.
        public var postbackConnections: Int = 32
        /// Every postback on a connection of its own, closed after the answer (as some webhook
        /// senders do). Default `false`.
        public var freshPostbackConnections = false

        /// Creates a configuration; every parameter has the default documented on its property.
        public init(
            host: String = "127.0.0.1",
            port: Int = 8090,
            processingDelay: Duration = .milliseconds(200),
            retrySpeedFactor: Double = 1,
            postbackTimeout: Duration = .seconds(15),
            pollWait: Duration = .seconds(30),
            pollRate: Double = 5,
            resultRetention: Duration = .seconds(300),
            allowedApplicationIDs: Set<String>? = nil,
            maxJobCharacters: Int = 250_000,
            faults: FaultPlan = FaultPlan(),
            postbackRetryDelays: [Duration] = Configuration.blitlineRetryDelays
        ) {
            self.host = host
            self.port = port
            self.processingDelay = processingDelay
            self.retrySpeedFactor = retrySpeedFactor
            self.postbackTimeout = postbackTimeout
            self.pollWait = pollWait
            self.pollRate = pollRate
            self.resultRetention = resultRetention
            self.allowedApplicationIDs = allowedApplicationIDs
            self.maxJobCharacters = maxJobCharacters
            self.faults = faults
            self.postbackRetryDelays = postbackRetryDelays
        }

        /// Blitline's postback retry delays: 1 s, 3 s, 15 s, 10 min.
        public static let blitlineRetryDelays: [Duration] = [.seconds(1), .seconds(3), .seconds(15), .seconds(600)]
    }

    /// The configuration.
    public let configuration: Configuration
    let logger: Logger

    /// Creates a simulator; nothing listens until ``run(onServerRunning:)``.
    public init(configuration: Configuration = Configuration(), logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Serves until the task is cancelled (or the server fails), then stops processing, shuts
    /// its HTTP client down and returns.
    ///
    /// - Parameter onServerRunning: called with the bound port once the server accepts
    ///   connections.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        var clientConfiguration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        clientConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = self.configuration.postbackConnections
        clientConfiguration.httpVersion = .http1Only
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        let (jobs, jobQueue) = AsyncStream<SimulatedJob>.makeStream()
        let core = SimulatorCore(
            configuration: self.configuration,
            httpClient: httpClient,
            jobQueue: jobQueue,
            logger: self.logger
        )
        let listening = ListeningChannel()
        let application = Application(
            router: core.makeRouter(),
            configuration: .init(address: .hostname(self.configuration.host, port: self.configuration.port)),
            onServerRunning: { channel in
                listening.set(channel)
                await onServerRunning(channel.localAddress?.port ?? 0)
            },
            logger: self.logger
        )
        let result = await Result {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    try await application.runTakingCancellationAsGracefulShutdown(listening: listening, logger: self.logger)
                    jobQueue.finish()
                }
                for await job in jobs {
                    group.addTask { await core.process(job) }
                }
                group.cancelAll()
            }
        }
        try? await httpClient.shutdown()
        try result.get()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}
