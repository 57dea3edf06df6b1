import AsyncHTTPClient
import AsyncSupport
import Blitline
import Hummingbird
import Logging
import Synchronization

/// The simulator's shared state and behaviour while it runs; the HTTP handlers and the processing
/// tasks all go through it.
final class SimulatorCore: Sendable {
    let configuration: BlitlineSimulator.Configuration
    let faults: Mutex<FaultPlan>
    let statistics: StatisticsRecorder
    let pollCache: PollCache
    let jobQueue: AsyncStream<SimulatedJob>.Continuation
    let sourceLoader: SourceLoader
    let postbackSender: PostbackSender
    /// The postbacks dropped by fault injection (the latest `droppedPostbacksKept`), for a test
    /// to deliver itself when it chooses: `{"job_id", "postback_url", "body"}`.
    let droppedPostbacks = Mutex<[JSONValue]>([])
    static let droppedPostbacksKept = 10_000
    let logger: Logger

    init(
        configuration: BlitlineSimulator.Configuration,
        httpClient: HTTPClient,
        jobQueue: AsyncStream<SimulatedJob>.Continuation,
        logger: Logger
    ) {
        self.configuration = configuration
        self.faults = Mutex(configuration.faults)
        self.statistics = StatisticsRecorder()
        self.pollCache = PollCache(
            retention: configuration.resultRetention, ratePerSecond: configuration.pollRate, statistics: self.statistics)
        self.jobQueue = jobQueue
        self.sourceLoader = SourceLoader(httpClient: httpClient)
        self.postbackSender = PostbackSender(
            httpClient: httpClient,
            retryDelays: configuration.postbackRetryDelays,
            speedFactor: configuration.retrySpeedFactor,
            timeout: configuration.postbackTimeout,
            freshConnections: configuration.freshPostbackConnections,
            sending: Budget(capacity: configuration.postbackConnections),
            statistics: self.statistics,
            logger: logger
        )
        self.logger = logger
    }

    func count(_ update: (inout SimulatorStats) -> Void) {
        self.statistics.count(update)
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestLogMiddleware(logger: self.logger))
        router.post("/job") { request, _ in try await self.handleSubmit(request) }
        router.get("/listen/:job_id") { _, context in
            await self.handleListen(jobID: context.parameters.get("job_id") ?? "")
        }
        router.post("/_control") { request, _ in try await self.handleControl(request) }
        router.get("/_control") { _, _ in self.controlResponse() }
        router.get("/_control/stats") { _, _ in
            self.pollCache.purgeExpired()
            return Response.json(self.statistics.json)
        }
        router.get("/_control/dropped_postbacks") { _, _ in
            Response.json(.array(self.droppedPostbacks.withLock { $0 }))
        }
        return router
    }

    /// "Processes" an accepted job, then posts back or publishes it to the poll cache.
    func process(_ job: SimulatedJob) async {
        if self.configuration.processingDelay > .zero {
            guard (try? await Task.sleep(for: self.configuration.processingDelay)) != nil else { return }
        }
        let source = await self.sourceLoader.size(of: job.json["src"])
        let results = JobProcessor.results(of: job, source: source)
        let failed = results["errors"] != nil || results["images"]?.arrayValue?.contains { $0["error"] != nil } == true
        self.count { failed ? ($0.jobsFailed += 1) : ($0.jobsCompleted += 1) }
        guard job.postbackURL != nil else {
            let publishedResults: JSONValue = (job.version ?? 0) > 1.18 ? results : .string(results.jsonString)
            let body = JSONValue.object([.init(key: "results", value: publishedResults)]).jsonBytes
            self.pollCache.publish(jobID: job.jobID, applicationID: job.applicationID, body: body)
            return
        }
        let (drop, duplicate, delay) = self.faults.withLock { faults in
            let drop = faults.takePostbackDrop()
            return (drop, !drop && faults.takePostbackDuplicate(), faults.postbackDelay)
        }
        if drop {
            self.count { $0.postbacksDropped += 1 }
            if let url = job.postbackURL {
                let body = JSONValue.object([.init(key: "results", value: results)])
                let record: JSONValue = [
                    "job_id": .string(job.jobID), "postback_url": .string(url), "body": .string(body.jsonString),
                ]
                self.droppedPostbacks.withLock { dropped in
                    dropped.append(record)
                    if dropped.count > Self.droppedPostbacksKept { dropped.removeFirst(dropped.count - Self.droppedPostbacksKept) }
                }
            }
            self.logger.info("postback dropped (fault injection)", metadata: ["job_id": "\(job.jobID)"])
            return
        }
        if delay > .zero {
            guard (try? await Task.sleep(for: delay)) != nil else { return }
        }
        while self.faults.withLock({ $0.holdPostbacks }) {
            guard (try? await Task.sleep(for: .milliseconds(20))) != nil else { return }
        }
        if duplicate {
            self.count { $0.postbacksDuplicated += 1 }
            async let first = self.postbackSender.deliver(job, results: results)
            async let second = self.postbackSender.deliver(job, results: results)
            _ = await (first, second)
        } else {
            _ = await self.postbackSender.deliver(job, results: results)
        }
    }
}

extension Response {
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, contentType: String = "application/json") -> Response {
        var buffer = ByteBuffer()
        buffer.writeBytes(value.jsonBytes)
        return Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: buffer))
    }
}
