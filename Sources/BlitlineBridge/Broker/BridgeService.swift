import AMQP
import AsyncSupport
import Blitline
import Logging
import NIOCore
import ServiceLifecycle

/// The bridge's work against the broker: keeps two connections (one consuming, one publishing),
/// declares the topology, and runs the consumers of requests, deadlines, polls and the outcomes
/// stream. Any loss of the broker ends the session; the next one starts after a capped, jittered
/// backoff. On graceful shutdown it stops taking requests, lets those in hand finish, and returns.
struct BridgeService: Service, CustomStringConvertible {
    let configuration: BridgeConfiguration
    let topology: Topology
    let session: BrokerSession
    let ledger: OutcomeLedger
    let submitter: JobSubmitter
    let requests: RequestProcessor
    let timeouts: TimeoutProcessor
    let polls: PollProcessor
    /// Where the sessions' work runs (see ``run()``).
    let eventLoop: any EventLoop
    let metrics: BridgeMetrics
    let logger: Logger

    /// Short, and free of secrets: the service group logs services by their description.
    var description: String { "BridgeService(jobs: \(topology.jobsQueue), events: \(topology.eventsExchange))" }

    /// Runs the sessions and the submitter. All their work (each request's handling, the
    /// submissions, deadlines, polls and the outcomes stream's reader) prefers ``eventLoop`` as its
    /// task executor, not Swift's global pool: a wait that the AMQP connections' threads or the
    /// HTTP client end resumes on that loop (the HTTP client prefers its connections on it too),
    /// so each hand-off wakes one known thread, and the pool's threads stay asleep. A long step (a
    /// large request's JSON parsed) holds the loop meanwhile, and the HTTP listener's connections
    /// on it with it. deploy/BENCHMARKS.md, "The broker's work on one event loop": 0.85× of the
    /// bridge's CPU per job, with keep-alive postbacks and with a fresh connection per postback.
    func run() async throws {
        try await withTaskExecutorPreference(EventLoopExecutor(eventLoop)) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await submitter.run() }
                defer { submitter.finish() }
                try await runSessions()
            }
        }
    }

    /// How long the publishing connection lets a few publishes wait for more while postbacks and
    /// requests keep coming (`AMQPConnection.Configuration.publishGathering`): events, records and
    /// deadline messages that leave together cost the broker and the bridge far less per job
    /// (deploy/BENCHMARKS.md); each postback's answer waits that much longer.
    static let publishGathering: Duration = .milliseconds(1)

    /// A session that lasted this long was healthy: the reconnect backoff starts afresh after it.
    static let healthySession: Duration = .seconds(60)

    /// Runs sessions until a graceful shutdown (or cancellation); only a fatal error ends it sooner.
    private func runSessions() async throws {
        var failures = 0
        metrics.brokerConnected.record(0)
        var nodes = try configuration.brokerEndpoints(connectionName: "blitline-bridge consumer")
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let started = ContinuousClock.now
            do {
                try await runSession(on: &nodes)
                failures = 0
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                logger.warning("broker session ended unexpectedly; starting a new one")
            } catch let error as BridgeError where error.isFatal {
                logger.critical("cannot start", metadata: ["error": "\(error)"])
                throw error
            } catch {
                disconnected()
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                if ContinuousClock.now - started >= Self.healthySession { failures = 0 }
                failures += 1
                metrics.brokerReconnects.increment()
                let delay = Self.backoff(failures: failures)
                logger.warning(
                    "broker connection lost; reconnecting",
                    metadata: ["error": "\(error)", "retry_in": "\(delay)"])
                // Ends early on graceful shutdown; the loop's condition then ends the service.
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            }
        }
    }

    /// 0.5 s doubling up to 30 s, each with ±50 % jitter so that instances do not reconnect in step.
    static func backoff(failures: Int) -> Duration {
        let base = min(30.0, 0.5 * Double(1 << min(failures - 1, 10)))
        return .milliseconds(Int(base * Double.random(in: 0.5...1.5) * 1000))
    }

    private func runSession(on nodes: inout AMQPEndpoints) async throws {
        let (consuming, node) = try await connectToANode(&nodes, name: "consumer")
        var amqp = node
        amqp.connectionName = node.connectionName?.replacingOccurrences(of: "consumer", with: "publisher")
        amqp.threadName = "amqp publisher"
        amqp.publishGathering = Self.publishGathering
        let publishing: AMQPConnection
        do {
            publishing = try await connectUnlessShuttingDown(amqp)
        } catch {
            await consuming.close()
            throw error
        }
        // Connected after the shutdown began: nothing to take, nothing to finish.
        guard !Task.isShuttingDownGracefully else { return await close(consuming, publishing) }
        do {
            try await serve(consuming: consuming, publishing: publishing, node: node)
        } catch {
            await close(consuming, publishing)
            throw error
        }
        await close(consuming, publishing)
    }

    /// Connects to the next node that answers, trying each once; both of a session's connections
    /// go to the node that answered.
    private func connectToANode(
        _ nodes: inout AMQPEndpoints, name: String
    ) async throws -> (AMQPConnection, AMQPConnection.Configuration) {
        let several = nodes.configurations.count > 1
        return try await nodes.connectToANode(
            logger: logger,
            failed: { node, error in
                if several, !Task.isShuttingDownGracefully {
                    logger.info("broker node unavailable; trying the next", metadata: ["broker": "\(node)", "error": "\(error)"])
                }
            },
            connect: connectUnlessShuttingDown)
    }

    /// Connects to `node`, or throws `CancellationError` as soon as a graceful shutdown begins: an
    /// attempt that a broker never answers lasts its whole `connection_timeout`, which a shutdown
    /// does not wait for. A connection opened after that is closed.
    private func connectUnlessShuttingDown(_ node: AMQPConnection.Configuration) async throws -> AMQPConnection {
        let (opened, continuation) = AsyncThrowingStream.makeStream(of: AMQPConnection.self)
        let logger = logger
        Task {
            do {
                let connection = try await AMQPConnection.connect(node, logger: logger)
                if case .terminated = continuation.yield(connection) { await connection.close() }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        // The stream ends its wait when the task waiting on it is cancelled.
        return try await cancelWhenGracefulShutdown {
            for try await connection in opened { return connection }
            throw CancellationError()
        }
    }

    private func close(_ connections: AMQPConnection...) async {
        disconnected()
        for connection in connections { await connection.close() }
    }

    private func serve(
        consuming: AMQPConnection, publishing: AMQPConnection, node: AMQPConnection.Configuration
    ) async throws {
        try await topology.declare(on: consuming)
        let missing = MissingQueues(topology, on: publishing, logger: logger)
        let publisher = EventPublisher(
            channel: try await PublishChannel.open(on: publishing, restoring: missing.restore), topology: topology,
            timers: eventLoop)
        session.connected(publisher)
        metrics.brokerConnected.record(1)
        logger.info(
            "connected to the broker",
            metadata: ["broker": "\(node)", "mode": "\(configuration.usesPostbacks ? "postback" : "polling")"])

        // Cancelled (a shutdown past its grace), the session ends at once: batches waiting for a
        // broker that does not confirm (an alarm) fail rather than hold the tasks that sent them.
        try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await withThrowingDiscardingTaskGroup { consumers in
                        consumers.addTask {
                            // A request over MAX_REQUEST_BYTES is never held: its body is dropped as it arrives.
                            try await consuming.openChannel().handleDeliveries(
                                from: topology.jobsQueue, prefetch: UInt16(configuration.prefetch),
                                maxBodyBytes: configuration.maxRequestBytes
                            ) { try await requests.process($0, effects: publisher) }
                        }
                        consumers.addTask {
                            try await consuming.openChannel().handleDeliveries(
                                from: topology.timeoutsQueue, prefetch: 16
                            ) { try await timeouts.process($0, publisher: publisher) }
                        }
                        // In either mode: jobs submitted before a restart from polling into postback
                        // mode are polled to their end. Each poll in hand is one long poll at most: the
                        // HTTP client's pool has room for them all.
                        consumers.addTask {
                            try await consuming.openChannel().handleDeliveries(
                                from: topology.pollsQueue, prefetch: UInt16(configuration.effectivePollConcurrency)
                            ) {
                                try await polls.process($0, publisher: publisher)
                            }
                        }
                    }
                }
                group.addTask { await readOutcomes(startingAt: node) }
                group.addTask {
                    async let _ = watchBlocked(publishing)
                    let reason = await Self.firstClosed(consuming, publishing)
                    // Not ready from this moment: nothing in hand can be finished any more.
                    disconnected()
                    throw reason
                }
                // The consumers return only after a graceful shutdown drained them.
                try await group.next()
                group.cancelAll()
            }
        } onCancel: {
            publisher.stop()
        }
    }

    /// Reads the outcomes stream into the ledger until the session ends, on a connection of its
    /// own: a stream that cannot be read for a while (its leader lost with a cluster node, a
    /// backlog) delays timeouts, which wait for the ledger to catch up, and never ends the session
    /// nor holds requests and postbacks back.
    private func readOutcomes(startingAt node: AMQPConnection.Configuration) async {
        var nodes = (try? configuration.brokerEndpoints(connectionName: "blitline-bridge outcomes"))
            ?? AMQPEndpoints([node])
        var target = node
        target.connectionName = node.connectionName?.replacingOccurrences(of: "consumer", with: "outcomes")
        target.threadName = "amqp outcomes"
        var failures = 0
        while !Task.isCancelled {
            var connection: AMQPConnection?
            do {
                let reading = try await AMQPConnection.connect(target, logger: logger)
                connection = reading
                let stream = topology.outcomesStream
                // Bodies larger than a record's (events copied by an earlier version's binding)
                // are dropped as they arrive: their headers say what the ledger needs.
                let consumer = try await reading.openChannel().consume(
                    queue: stream, prefetch: 1000, arguments: ["x-stream-offset": ledger.liveStart()],
                    maxBodyBytes: OutcomeRecord.maxBodyBytes)
                failures = 0
                try await withThrowingTaskGroup { group in
                    group.addTask { try await ledger.read(consumer) }
                    group.addTask {
                        while true {
                            let size = ledger.size
                            metrics.ledgerFingerprints.record(size.entries)
                            metrics.ledgerBytes.record(size.bytes)
                            try await Task.sleep(for: .seconds(5))
                        }
                    }
                    group.addTask {
                        try await ledger.runBackfills { offset in
                            logger.notice(
                                "reading the outcomes stream back for deadlines older than what this instance knows",
                                metadata: ["from": "\(offset)"])
                            let channel = try await reading.openChannel()
                            let consumer = try await channel.consume(
                                queue: stream, prefetch: 1000, arguments: ["x-stream-offset": offset],
                                maxBodyBytes: OutcomeRecord.maxBodyBytes)
                            return (channel, consumer)
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            } catch {
                if let error = error as? AMQPError,
                    error.code == .consumerCancelled || error.replyCode == AMQPError.ReplyCode.notFound
                {
                    // The stream was deleted: the first record published declares it again (``MissingQueues``).
                    ledger.streamLost()
                }
                if !Task.isCancelled {
                    logger.warning("cannot read the outcomes stream; timeouts wait until it can be read", metadata: ["error": "\(error)"])
                }
            }
            await connection?.close()
            failures += 1
            target = nodes.next()
            try? await Task.sleep(for: Self.backoff(failures: failures))
        }
    }

    /// `/readyz` answers 503 and `blitline_bridge_broker_blocked` is 1 while the broker blocks
    /// the publishing connection.
    private func watchBlocked(_ publishing: AMQPConnection) async {
        for await blocked in publishing.blockedChanges() {
            metrics.brokerBlocked.record(blocked ? 1 : 0)
        }
        metrics.brokerBlocked.record(0)
    }

    private func disconnected() {
        session.disconnected()
        metrics.brokerConnected.record(0)
    }

    private static func firstClosed(_ a: AMQPConnection, _ b: AMQPConnection) async -> AMQPError {
        await withTaskGroup(of: AMQPError.self) { group in
            group.addTask { await a.closed() }
            group.addTask { await b.closed() }
            let reason = await group.next()!
            group.cancelAll()
            return reason
        }
    }
}
