import AMQP
import Blitline
import BlitlineSimulator
import Foundation
import Synchronization
import Testing
import TestSupport

@testable import BlitlineBridge

/// One test's world: a simulator, the test's own queue and exchange names on the shared broker,
/// collectors reading the events back, and any number of bridge processes.
///
/// Before a bridge starts, the harness declares the events exchange with a queue bound to `job.#`
/// (the events), a queue for `reply_to`, and the jobs queue exactly as the bridge declares it, so
/// that requests published first are kept.
final class BridgeHarness: Sendable {
    static let applicationID = "test-app"

    let label: String
    let jobsQueue: String
    let eventsExchange: String
    let replyQueue: String
    /// The key bridges sign postback tokens with (the first of their `POSTBACK_SECRET`).
    let secret: String
    let simulator: RunningSimulator
    /// Every event published to the events exchange.
    let events: EventCollector
    /// Every event sent to `replyQueue`.
    let replies: EventCollector
    private let broker: BrokerClient
    private let bridges = Mutex<[BridgeProcess]>([])
    private let sentinels = Mutex(0)

    var eventsQueue: String { jobsQueue + ".test-events" }
    /// `{JOBS_QUEUE}.dead`.
    var deadQueue: String { topology.deadQueue }
    /// What a bridge started with the harness's default settings declares.
    var topology: Topology {
        Topology(
            jobsQueue: jobsQueue, eventsExchange: eventsExchange, jobTimeout: .seconds(60), timeoutGrace: .seconds(1),
            queueType: TestEnvironment.queueType)
    }

    private init(label: String, simulator: RunningSimulator, broker: BrokerClient) {
        let suffix = TestEnvironment.uniqueSuffix()
        self.label = label
        self.jobsQueue = "test.\(label).\(suffix).jobs"
        self.eventsExchange = "test.\(label).\(suffix).events"
        self.replyQueue = "test.\(label).\(suffix).replies"
        self.secret = "test-secret-" + String(repeating: suffix, count: 4)
        self.simulator = simulator
        self.broker = broker
        self.events = EventCollector(queue: jobsQueue + ".test-events")
        self.replies = EventCollector(queue: "test.\(label).\(suffix).replies")
    }

    /// Runs `body` with a fresh harness, then stops every bridge it started (SIGKILL), the
    /// collectors and the simulator, and deletes the test's queues and exchange.
    static func run(
        _ label: String,
        retrySpeedFactor: Double = 0.05,
        simulator configure: (inout BlitlineSimulator.Configuration) -> Void = { _ in },
        _ body: (BridgeHarness) async throws -> Void
    ) async throws {
        let simulator = try await RunningSimulator.start(retrySpeedFactor: retrySpeedFactor, configure)
        let harness = BridgeHarness(label: label, simulator: simulator, broker: BrokerClient())
        let outcome: Result<Void, any Error>
        do {
            try await harness.declareTestTopology()
            harness.events.start()
            harness.replies.start()
            try await body(harness)
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await harness.tearDown()
        try outcome.get()
    }

    private func declareTestTopology() async throws {
        try await broker.withChannel { channel in
            // The test's own queues are of the bridge's type: on a cluster, they outlive a node too.
            let kind: AMQPTable = topology.queueType == .quorum ? ["x-queue-type": .string("quorum")] : [:]
            try await channel.declareExchange(eventsExchange, type: "topic", durable: true)
            try await channel.declareQueue(eventsQueue, durable: true, arguments: kind)
            try await channel.bindQueue(eventsQueue, exchange: eventsExchange, routingKey: "job.#")
            try await channel.declareQueue(replyQueue, durable: true, arguments: kind)
            try await channel.declareQueue(jobsQueue, durable: true, arguments: topology.queues[0].arguments)
        }
    }

    private func tearDown() async {
        for bridge in bridges.withLock({ $0 }) {
            bridge.signal(SIGKILL)
            _ = await bridge.waitForExit(timeout: .seconds(5))
        }
        await events.stop()
        await replies.stop()
        await simulator.stop()
        try? await broker.withChannel { channel in
            for queue in topology.queues.map(\.name) + [eventsQueue, replyQueue] {
                _ = try? await channel.deleteQueue(queue)
            }
            try? await channel.deleteExchange(eventsExchange)
        }
        await broker.close()
    }

    // MARK: Bridges

    /// Settings for a bridge in postback mode on a free port, reached at its own listener.
    func settings() throws -> BridgeSettings {
        let port = try TestEnvironment.freePort()
        return BridgeSettings(
            brokerURL: try TestEnvironment.brokerURL, simulatorURL: simulator.url, jobsQueue: jobsQueue,
            eventsExchange: eventsExchange, listenPort: port, postbackPort: port, secrets: [secret])
    }

    /// Starts a bridge and waits until it is ready. A listen port that another process took
    /// meanwhile is replaced by a new one, unless `pinned` (a restart keeps its port).
    @discardableResult
    func startBridge(
        _ settings: BridgeSettings? = nil, pinned: Bool = false, waitUntilReady: Bool = true
    ) async throws -> BridgeProcess {
        var settings = try settings ?? self.settings()
        for attempt in 1...3 {
            let bridge = try launch(settings)
            guard waitUntilReady else { return bridge }
            await bridge.waitUntilListeningOrExited()
            let portTaken = !bridge.isRunning && bridge.logLines.contains { $0.contains("cannot listen") }
            if portTaken, !pinned, attempt < 3 {
                let port = try TestEnvironment.freePort()
                if settings.postbackPort == settings.listenPort { settings.postbackPort = port }
                settings.listenPort = port
                continue
            }
            try await bridge.waitUntilReady()
            return bridge
        }
        fatalError("unreachable")
    }

    /// Starts a new process with the settings of `bridge` (same port, queues and secrets).
    @discardableResult
    func restart(_ bridge: BridgeProcess) async throws -> BridgeProcess {
        try await startBridge(bridge.settings, pinned: true)
    }

    private func launch(_ settings: BridgeSettings) throws -> BridgeProcess {
        let number = bridges.withLock { $0.count } + 1
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("blitline-bridge-tests").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let bridge = try BridgeProcess(
            settings: settings, logPath: "\(directory)/\(label)-\(TestEnvironment.uniqueSuffix())-\(number).log")
        bridges.withLock { $0.append(bridge) }
        return bridge
    }

    /// The end of every bridge's log, for failure messages.
    func diagnostics() -> String {
        bridges.withLock { $0 }.map { $0.logTail() }.joined(separator: "\n")
    }

    // MARK: Broker

    /// Publishes requests to the jobs queue through the default exchange, each confirmed.
    func publish(_ requests: [TestRequest]) async throws {
        try await broker.withChannel { channel in
            for request in requests {
                try await channel.publish(request.body, routingKey: jobsQueue, properties: request.properties)
            }
        }
    }

    func publish(_ request: TestRequest) async throws { try await publish([request]) }

    /// The number of barrier sentinels published so far (`barrier`): the simulator's counters and
    /// the bridges' metrics count them with the test's own requests.
    var sentinelsPublished: Int { sentinels.withLock { $0 } }

    /// Counts a sentinel and names it.
    func nextSentinelID() -> String {
        TestRequest.sentinelPrefix + String(sentinels.withLock { count in
            count += 1
            return count
        })
    }

    /// Publishes the requests with the simulator holding back every postback; returns the postbacks
    /// once all are held (for the test to send when it chooses), or fails the test.
    func publishHoldingPostbacks(
        _ requests: [TestRequest], timeout: Duration = .seconds(30), sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> [(jobID: String, url: String, body: [UInt8])] {
        try await simulator.control(["drop_postback_fraction": 1.0])
        try await publish(requests)
        var held: [(jobID: String, url: String, body: [UInt8])] = []
        let all = await eventually(timeout: timeout) {
            held = (try? await simulator.droppedPostbacks()) ?? []
            return held.count == requests.count
        }
        try #require(all, "\(held.count) postbacks held back\n\(diagnostics())", sourceLocation: sourceLocation)
        return held
    }

    /// Publishes a body as it is to one of the bridge's queues, confirmed.
    func publishRaw(_ body: [UInt8], to queue: String, properties: AMQPProperties = AMQPProperties()) async throws {
        try await broker.withChannel { try await $0.publish(body, routingKey: queue, properties: properties) }
    }

    /// Messages in a queue, ready or delivered and not yet acknowledged, as the broker holds them now.
    func messagesHeld(in queue: String) async throws -> Int? {
        try await messagesHeld(inQueuesWhere: { $0 == queue })[queue]
    }

    /// Messages held (ready, delivered and not yet acknowledged, or being dead-lettered) in each of
    /// the broker's queues whose name `include` accepts, read live with one `rabbitmqctl eval`.
    ///
    /// Not `rabbitmqctl list_queues messages`: for a quorum queue that figure is a copy the queue
    /// refreshes every 5 s (3.10's `quorum_tick_interval`), so it shows 0 for seconds after a
    /// publish, and a test waiting on it for "nothing left" goes on too early. The quorum queue's
    /// leader is asked instead, counting what its at-least-once dead-lettering still holds: a
    /// message expiring into another queue is counted until that queue has confirmed it.
    func messagesHeld(inQueuesWhere include: (String) -> Bool) async throws -> [String: Int] {
        let rows = try await TestEnvironment.brokerCtl("-q", "eval", Self.liveQueueDepths)
        var held: [String: Int] = [:]
        for row in rows.split(separator: "\n") {
            let columns = row.split(separator: " ")
            guard columns.count == 2, include(String(columns[0])), let count = Int(columns[1]) else { continue }
            held[String(columns[0])] = count
        }
        return held
    }

    /// Prints `name count` for each classic and quorum queue (streams hold no count).
    private static let liveQueueDepths = """
        lists:foreach(fun(Q) ->
            {resource, _, queue, Name} = amqqueue:get_name(Q),
            Held = case amqqueue:get_type(Q) of
                rabbit_quorum_queue ->
                    Leader = amqqueue:get_pid(Q),
                    {ok, {_, Total}, _} = ra:leader_query(Leader, fun rabbit_fifo:query_messages_total/1),
                    {ok, {_, {DeadLettering, _}}, _} = ra:leader_query(Leader, fun rabbit_fifo:query_stat_dlx/1),
                    Total + DeadLettering;
                rabbit_classic_queue ->
                    [{messages, Messages}] = rabbit_amqqueue:info(Q, [messages]),
                    Messages;
                _ -> none
            end,
            is_integer(Held) andalso io:format("~s ~b~n", [Name, Held])
        end, rabbit_amqqueue:list()).
        """

    /// Waits until the broker holds no request of this test (in the jobs queue or a retry queue),
    /// and with `deadlines` no deadline either; returns whether that happened within `timeout`.
    ///
    /// A request is acknowledged only after its events are confirmed (or its job is accepted and
    /// its deadline stored), and a deadline message only after its timeout events are: when none
    /// is held, all that handling is over. A redelivered or put-back copy would still be held.
    /// Deadlines are held for `JOB_TIMEOUT` plus the grace, so `deadlines` suits short timeouts.
    func waitUntilSettled(deadlines: Bool = false, timeout: Duration) async -> Bool {
        let retries = jobsQueue + ".retry."
        let deadlineQueues = jobsQueue + ".deadlines."
        let timeouts = topology.timeoutsQueue
        return await eventually(timeout: timeout) {
            guard
                let held = try? await messagesHeld(inQueuesWhere: { name in
                    name == jobsQueue || name.hasPrefix(retries)
                        || (deadlines && (name.hasPrefix(deadlineQueues) || name == timeouts))
                })
            else { return false }
            return held[jobsQueue] == 0 && held.values.allSatisfy { $0 == 0 }
        }
    }

    /// Messages ready in a queue.
    func depth(of queue: String) async throws -> UInt32 {
        try await broker.withChannel { try await $0.declareQueue(queue, passive: true).messageCount }
    }

    /// Takes up to `count` messages from the dead-letter queue, waiting up to `timeout` for them.
    func deadLetters(count: Int, timeout: Duration = .seconds(10)) async throws -> [AMQPDelivery] {
        var taken: [AMQPDelivery] = []
        _ = try await eventually(timeout: timeout) {
            try await broker.withChannel { channel in
                while taken.count < count, let delivery = try await channel.get(queue: deadQueue) {
                    delivery.ack()
                    taken.append(delivery)
                }
            }
            return taken.count >= count
        }
        return taken
    }

    /// A token as the bridge signs it for a postback URL.
    func postbackToken(
        for requestID: String, correlationID: String? = nil, signedWith secret: String? = nil,
        submittedAt: Date = Date(), jobTimeout: Duration = .seconds(60)
    ) -> String {
        let context = RequestEnvelope(requestID: requestID, correlationID: correlationID, replyTo: nil, traceparent: nil)
        return PostbackToken(context: context, submittedAt: Int64(submittedAt.timeIntervalSince1970 * 1000))
            .signed(with: PostbackToken.Keys(secrets: [secret ?? self.secret], jobTimeout: jobTimeout))
    }
}

/// The test's own connection with a confirm-mode channel, opened again after the broker was away
/// or refused something on it.
final class BrokerClient: Sendable {
    private let current = Mutex<(connection: AMQPConnection, channel: AMQPChannel)?>(nil)

    func withChannel<T>(_ body: (AMQPChannel) async throws -> T) async throws -> T {
        let channel: AMQPChannel
        if let (connection, open) = current.withLock({ $0 }), connection.closeReason == nil {
            channel = open
        } else {
            let connection = try await TestEnvironment.connect()
            channel = try await connection.openChannel()
            try await channel.enableConfirms()
            if let old = current.withLock({ $0 }) { await old.connection.close() }
            current.withLock { $0 = (connection, channel) }
        }
        do {
            return try await body(channel)
        } catch {
            // Whatever state the broker keeps for this channel, the next call starts afresh.
            if let old = current.withLock({ state in defer { state = nil }; return state }) { await old.connection.close() }
            throw error
        }
    }

    func close() async {
        if let (connection, _) = current.withLock({ $0 }) { await connection.close() }
    }
}
