import AMQP
import Blitline
import Foundation
import Testing
import TestSupport

@testable import BlitlineBridge
@testable import BlitlineBridgeCLI

extension BridgeProcessTests {
    /// `blitline-bridge dead-letters` and `blitline-bridge check` as an operator runs them: the
    /// built executable against the test broker, each test with its own JOBS_QUEUE.
    @Suite struct OperatorToolsTests {
        // MARK: dead-letters

        @Test func listShowsTheDeadLettersAndLeavesTheQueueAsItWas() async throws {
            try await OperatorQueues.with("list") { queues in
                let letters = try await queues.publishDeadLetters(count: 3)

                let all = try await queues.tool(["dead-letters", "list"])
                #expect(all.status == 0, "\(all)")
                #expect(all.lines.first == "\(queues.deadQueue): 3 dead letters")
                for letter in letters {
                    let block = try #require(all.lines.firstIndex { $0.hasPrefix(letter.shownName) }, "\(all)")
                    #expect(all.lines[block].contains("correlation \(letter.correlationID)"))
                    #expect(all.lines[block + 1] == "    error: \(letter.error)")
                    let start = String(decoding: letter.body.prefix(40), as: UTF8.self)
                    #expect(all.lines[block + 2].hasPrefix("    body:  \(start)"))
                    #expect(all.lines[block + 2].hasSuffix("\"functions\": []} (\(letter.body.count) bytes)"))
                }
                #expect(try await queues.deadLetterIDs() == letters.map(\.requestID))

                let two = try await queues.tool(["dead-letters", "list", "--limit", "2"])
                #expect(two.status == 0, "\(two)")
                #expect(two.lines.first == "\(queues.deadQueue): 3 dead letters, showing the first 2")
                #expect(two.lines.filter { $0.hasPrefix("    error: ") }.count == 2)
                #expect(!two.output.contains(letters[2].error))
                #expect(try await queues.deadLetterIDs() == letters.map(\.requestID))

                let json = try await queues.tool(["dead-letters", "list", "--json"])
                #expect(json.status == 0, "\(json)")
                let objects = try json.lines.map { try JSONValue(parsing: Array($0.utf8)) }
                #expect(objects.map { $0["request_id"]?.stringValue } == letters.map(\.requestID), "\(json)")
                #expect(objects.map { $0["message_id"] } == letters.map { $0.messageID.map(JSONValue.string) ?? .null })
                #expect(objects.map { $0["error"]?.stringValue } == letters.map(\.error))
                #expect(objects.map { $0["body"]?.stringValue } == letters.map { String(decoding: $0.body, as: UTF8.self) })
                #expect(objects.map { $0["body_bytes"]?.intValue } == letters.map(\.body.count))
                #expect(try await queues.deadLetterIDs() == letters.map(\.requestID))
            }
        }

        @Test func replayMovesTheDeadLettersBackWithoutTheirError() async throws {
            try await OperatorQueues.with("replay") { queues in
                try await queues.declareJobsQueue()
                let letters = try await queues.publishDeadLetters(count: 3)

                let first = try await queues.tool(["dead-letters", "replay", "--limit", "1"])
                #expect(first.status == 0, "\(first)")
                #expect(first.lines.first == "✔ \(letters[0].name) → \(queues.jobsQueue) (was: \(letters[0].error))")
                #expect(first.lines.last == "1 of 1 dead letter replayed to \(queues.jobsQueue); 2 left in \(queues.deadQueue)")
                #expect(try await queues.deadLetterIDs() == letters[1...].map(\.requestID))

                let rest = try await queues.tool(["dead-letters", "replay"])
                #expect(rest.status == 0, "\(rest)")
                #expect(rest.lines.last == "2 of 2 dead letters replayed to \(queues.jobsQueue); 0 left in \(queues.deadQueue)")
                #expect(try await queues.depth(of: queues.deadQueue) == 0)

                let requests = try await queues.take(from: queues.jobsQueue)
                #expect(requests.map { RequestEnvelope($0.properties).requestID } == letters.map(\.requestID))
                for (request, letter) in zip(requests, letters) {
                    let headers = request.properties.headers ?? [:]
                    #expect(request.body == letter.body)
                    #expect(request.properties.messageID == letter.messageID)
                    #expect(request.properties.correlationID == letter.correlationID)
                    #expect(request.properties.contentType == "application/json")
                    #expect(request.properties.deliveryMode == AMQPProperties.persistent)
                    #expect(headers["traceparent"]?.stringValue == OperatorQueues.traceparent)
                    #expect(headers["x-bridge-error"] == nil)
                    #expect(headers["x-bridge-attempt"] == nil)
                    #expect(headers["x-death"] == nil)
                }
            }
        }

        /// Requests dead-lettered for a failure that has passed (Blitline down for every attempt)
        /// come back with `replay` and are submitted again, although their failure events are
        /// recorded as their outcomes: each ends `completed`.
        @Test func replayedRequestsAreSubmittedAgainAndComplete() async throws {
            try await BridgeHarness.run("replay-resubmitted") { h in
                var settings = try h.settings()
                settings.submitMaxAttempts = 1
                try await h.startBridge(settings)
                // Every submission fails until the requests are dead letters; then Blitline is back.
                try await h.simulator.control(["fail_submit_fraction": 1])
                let requests = (0..<3).map { TestRequest.thumbnails("replayed-\($0)", index: $0) }
                try await h.publish(requests)
                #expect(await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(30)), "\(h.diagnostics())")
                for request in requests { #expect(h.events.events(for: request.id).map(\.reason) == ["submit_failed"]) }
                let deadLettered = await eventually(timeout: .seconds(10)) { (try? await h.depth(of: h.deadQueue)) == 3 }
                let depth = try await h.depth(of: h.deadQueue)
                #expect(deadLettered, "\(depth) dead letters\n\(h.diagnostics())")
                try await h.simulator.control(["fail_submit_fraction": 0])

                let replay = try await OperatorQueues.runTool(
                    ["dead-letters", "replay"],
                    environment: [
                        "AMQP_URL": try TestEnvironment.brokerURL, "JOBS_QUEUE": h.jobsQueue,
                        "EVENTS_EXCHANGE": h.eventsExchange, "BLITLINE_APPLICATION_ID": "app",
                    ])
                #expect(replay.status == 0, "\(replay)")
                let completed = await eventually(timeout: .seconds(30)) {
                    requests.allSatisfy { h.events.events(for: $0.id).map(\.status) == ["failed", "completed"] }
                }
                #expect(completed, "\(requests.map { h.events.events(for: $0.id).compactMap(\.id) })\n\(h.diagnostics())")
                #expect(try await h.simulator.stats()["jobs_accepted"] == 3 + h.sentinelsPublished)
                #expect(try await h.depth(of: h.deadQueue) == 0)
            }
        }

        @Test func replayLeavesADeadLetterItCannotPublishInPlaceAndFails() async throws {
            try await OperatorQueues.with("replay-unroutable") { queues in
                // No jobs queue: the mandatory publish comes back unroutable.
                let letters = try await queues.publishDeadLetters(count: 2)

                let run = try await queues.tool(["dead-letters", "replay"])
                #expect(run.status == 1, "\(run)")
                #expect(run.output.contains("✘ \(letters[0].name): not replayed, left in \(queues.deadQueue)"), "\(run)")
                #expect(run.output.contains("\(queues.jobsQueue) does not exist"))
                #expect(run.lines.last == "0 of 2 dead letters replayed to \(queues.jobsQueue); 2 left in \(queues.deadQueue)")
                #expect(try await queues.deadLetterIDs() == letters.map(\.requestID))
            }
        }

        @Test func replayPropertiesDropOnlyTheFailureHeaders() {
            let properties = AMQPProperties(
                headers: [
                    "x-bridge-error": .string("rejected: no"), "traceparent": .string("t"), "x-bridge-attempt": .int32(3),
                    "x-death": .array([]), "x-first-death-queue": .string("q"), "x-bridge-request-id": .string("r"),
                ],
                deliveryMode: AMQPProperties.transient, correlationID: "c", expiration: "60000", messageID: "m",
                userID: "producer")
            let replayed = DeadLetters.replayProperties(properties)
            #expect(replayed.headers == ["traceparent": .string("t"), "x-bridge-request-id": .string("r")])
            #expect(replayed.messageID == "m" && replayed.correlationID == "c")
            // A copy the bridge publishes never expires, is never refused for another user's id, survives a restart.
            #expect(replayed.userID == nil && replayed.expiration == nil)
            #expect(replayed.deliveryMode == AMQPProperties.persistent)
            #expect(DeadLetters.replayProperties(AMQPProperties(headers: ["x-bridge-error": .string("e")])).headers == nil)
        }

        // MARK: submit

        @Test func submitMakesANewRequestEachTimeAndPrintsItsEvent() async throws {
            try await BridgeHarness.run("submit-tool") { h in
                let bridge = try await h.startBridge()
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent("blitline-bridge-tests")
                let file = directory.appendingPathComponent("order-\(TestEnvironment.uniqueSuffix()).json")
                try Data(TestRequest.thumbnails("submitted").body).write(to: file)
                defer { try? FileManager.default.removeItem(at: file) }
                let stem = file.deletingPathExtension().lastPathComponent

                // The same file twice is two requests, each with its own completed event; under
                // --json, stdout holds the events as published and nothing else.
                var ids: [String] = []
                for _ in 0..<2 {
                    let run = try await OperatorQueues.runTool(
                        ["submit", file.path, "--wait", "--json"], environment: bridge.settings.environment)
                    #expect(run.status == 0, "\(run)")
                    #expect(run.lines.count == 1, "\(run)")
                    let event = try JSONValue(parsing: Array((run.lines.first ?? "").utf8))
                    #expect(EventSchema.violations(of: event).isEmpty)
                    #expect(event["data"]?["status"]?.stringValue == "completed")
                    let id = try #require(event["data"]?["request_id"]?.stringValue)
                    #expect(id.hasPrefix(stem + "-") && run.errors.contains("submitted \(id)"), "\(run)")
                    ids.append(id)
                }
                #expect(Set(ids).count == 2, "\(ids)")

                // --id names the request; flags also take --flag=value.
                let named = try await OperatorQueues.runTool(
                    ["submit", file.path, "--id=order-7", "--wait", "--timeout=1m"], environment: bridge.settings.environment)
                #expect(named.status == 0, "\(named)")
                #expect(named.lines.first == "submitted order-7", "\(named)")
                #expect(named.lines.contains { $0.hasPrefix("✔ order-7: completed via postback (job ") }, "\(named)")
                #expect(named.lines.last == "1 requests: 1 completed, 0 failed", "\(named)")
            }
        }

        @Test func submitWaitsAsLongAsAJobMayTakeToEnd() throws {
            var configuration = BridgeConfiguration()
            #expect(SubmitCommand.waitLimit(configuration) == .seconds(30 * 60 + 10 + 60))
            configuration.jobTimeout = .seconds(120)
            configuration.timeoutGrace = .seconds(1)
            #expect(SubmitCommand.waitLimit(configuration) == .seconds(181))
            #expect(throws: (any Error).self) { try SubmitCommand.parse(["a.json", "b.json", "--id", "x"]) }
            #expect(try SubmitCommand.parse(["a.json", "--id", "x"]).requestID(for: "a.json") == "x")
            let unnamed = try SubmitCommand.parse(["dir/a.json"])
            #expect(unnamed.requestID(for: "dir/a.json") != unnamed.requestID(for: "dir/a.json"))
            #expect(unnamed.requestID(for: "dir/a.json").hasPrefix("a-"))
            let long = String(repeating: "é", count: 150) + ".json"
            #expect(unnamed.requestID(for: long).utf8.count <= RequestEnvelope.maxRequestIDBytes)
        }

        // MARK: check

        @Test func checkPassesOnAHealthySetup() async throws {
            try await BridgeHarness.run("check-healthy") { h in
                let bridge = try await h.startBridge()
                let run = try await OperatorQueues.runTool(["check"], environment: bridge.settings.environment)
                #expect(run.status == 0, "\(run)")
                #expect(run.lines.contains { $0.hasPrefix("✔ broker: connected to ") })
                for queue in h.topology.queues.map(\.name) {
                    #expect(run.lines.contains { $0.hasPrefix("✔ queue \(queue): exists") }, "\(queue)")
                }
                #expect(run.lines.contains("✔ exchange \(h.eventsExchange): exists, a durable topic exchange"))
                #expect(run.lines.contains { $0.hasPrefix("✔ mode: postback: Blitline will POST each result to "
                    + "\(bridge.settings.postbackBaseURL!)/postback/{token}") })
                #expect(run.lines.contains { $0.hasPrefix("✔ BLITLINE_API_URL: \(h.simulator.url) answers (HTTP ") })
                #expect(!run.output.contains("✘") && !run.output.contains("⚠"), "\(run)")
                #expect(run.lines.last?.hasPrefix("All ") == true)

                let json = try await OperatorQueues.runTool(["check", "--json"], environment: bridge.settings.environment)
                #expect(json.status == 0, "\(json)")
                let report = try JSONValue(parsing: Array(json.output.utf8))
                #expect(report["ok"] == .bool(true) && report["failures"]?.intValue == 0, "\(json)")
                let findings = report["findings"]?.arrayValue ?? []
                #expect(findings.count == run.lines.filter { $0.hasPrefix("✔ ") }.count, "\(json)")
                #expect(findings.contains { $0["subject"]?.stringValue == "broker" && $0["verdict"]?.stringValue == "pass" })

                // The management UI tells the instance's connections apart, and says what they are.
                let connections = try await TestEnvironment.controlBroker(
                    "ctl", "-q", "list_connections", "name", "client_properties", "--no-table-headers")
                let own = connections.split(separator: "\n").filter { $0.contains("pid \(bridge.pid))") }
                #expect(own.count >= 2, "the bridge's connections are not named after its pid: \(connections)")
                #expect(own.allSatisfy { $0.contains(BridgeVersion.current) && $0.contains("Swift on Linux") }, "\(own)")
            }
        }

        /// With a cluster's nodes in `AMQP_URL` and one of them down, the tools connect to one that
        /// answers, as the worker does, whichever node they try first (a random one).
        @Test func theToolsMoveToTheNextNodeWhenOneIsDown() async throws {
            try await BridgeHarness.run("tools-failover") { h in
                let bridge = try await h.startBridge()
                var environment = bridge.settings.environment
                let down = "amqp://guest:guest@127.0.0.1:\(try TestEnvironment.freePort())/%2F"
                environment["AMQP_URL"] = down + "," + (try TestEnvironment.brokerURL)
                for _ in 0..<6 {
                    let check = try await OperatorQueues.runTool(["check"], environment: environment)
                    #expect(check.status == 0, "\(check)")
                    let list = try await OperatorQueues.runTool(["dead-letters", "list"], environment: environment)
                    #expect(list.status == 0, "\(list)")
                }
            }
        }

        @Test func checkSaysWhenNothingListensAtTheBrokerURL() async throws {
            let simulator = try await RunningSimulator.start()
            let port = try TestEnvironment.freePort()
            let run = try await OperatorQueues.runTool(
                ["check", "--blitline-api-url", simulator.url, "--blitline-poll-url", simulator.url],
                environment: ["AMQP_URL": "amqp://guest:guest@127.0.0.1:\(port)/%2F", "BLITLINE_APPLICATION_ID": "app"])
            #expect(run.status == 1, "\(run)")
            #expect(
                run.lines.first
                    == "✘ broker: cannot connect to 127.0.0.1:\(port) (connection refused or unreachable): is the "
                    + "broker running, and are the host and port in AMQP_URL right? (topology not checked)", "\(run)")
            #expect(run.lines.contains { $0.hasPrefix("✔ BLITLINE_API_URL: ") })
            #expect(run.lines.last == "1 problem (✘), 0 warnings (⚠).")
            let json = try await OperatorQueues.runTool(
                ["check", "--json", "--blitline-api-url", simulator.url, "--blitline-poll-url", simulator.url],
                environment: ["AMQP_URL": "amqp://guest:guest@127.0.0.1:\(port)/%2F", "BLITLINE_APPLICATION_ID": "app"])
            #expect(json.status == 1, "\(json)")
            let report = try JSONValue(parsing: Array(json.output.utf8))
            #expect(report["ok"] == .bool(false) && report["failures"]?.intValue == 1, "\(json)")
            await simulator.stop()
        }

        @Test func checkSaysWhichQueueHasOtherArgumentsAndCreatesNothing() async throws {
            try await OperatorQueues.with("check-mismatch") { queues in
                let retryQueue = queues.topology.retryQueue(0)
                try await queues.declare(retryQueue, arguments: ["x-message-ttl": .int64(999)])

                let simulator = try await RunningSimulator.start()
                let run = try await queues.tool(["check", "--blitline-api-url", simulator.url, "--blitline-poll-url", simulator.url])
                await simulator.stop()
                #expect(run.status == 1, "\(run)")
                #expect(run.lines.last == "1 problem (✘), 11 warnings (⚠).")
                let line = try #require(run.lines.first { $0.hasPrefix("✘ queue \(retryQueue): ") }, "\(run)")
                #expect(line.contains("exists with other arguments than the bridge declares"))
                #expect(line.contains("PRECONDITION_FAILED") && line.contains("x-message-ttl"), "\(line)")
                #expect(run.lines.contains("⚠ queue \(queues.jobsQueue): missing (the bridge creates it on start)"))
                #expect(run.lines.contains("⚠ exchange \(queues.eventsExchange): missing (the bridge creates it on start)"))
                #expect(try await queues.exists(queues.jobsQueue) == false)
                #expect(try await queues.exists(queues.deadQueue) == false)
            }
        }

        // MARK: migrate

        /// The binding of versions before 0.2 copies every event into the outcomes stream; after
        /// `migrate` (run twice: it does no harm) events no longer reach the stream.
        @Test func migrateStopsCopyingEventsIntoTheOutcomesStream() async throws {
            try await OperatorQueues.with("migrate") { queues in
                let stream = queues.topology.outcomesStream
                let arguments = try #require(queues.topology.queues.first { $0.name == stream }?.arguments)
                try await queues.channel.declareExchange(queues.eventsExchange, type: "topic", durable: true)
                try await queues.declare(stream, arguments: arguments)
                try await queues.channel.bindQueue(stream, exchange: queues.eventsExchange, routingKey: "job.#")
                func publishEvent(_ id: String) async throws {
                    try await queues.channel.publish(
                        Array("{}".utf8), exchange: queues.eventsExchange, routingKey: "job.completed",
                        properties: AMQPProperties(messageID: id))
                }
                try await publishEvent("before-migrate")
                let first = try await queues.tool(["migrate"])
                #expect(first.status == 0, "\(first)")
                #expect(first.output.contains("\(stream) no longer receives a copy of each event"), "\(first)")
                try await publishEvent("after-migrate")
                let again = try await queues.tool(["migrate"])
                #expect(again.status == 0, "\(again)")
                let ids = try await streamMessages(stream) { end in
                    try await queues.channel.publish([], routingKey: stream, properties: AMQPProperties(messageID: end))
                }.map(\.properties.messageID)
                #expect(ids == ["before-migrate"])
            }
        }

        @Test func aLoopbackPostbackURLFailsOnlyForTheRealBlitline() throws {
            var configuration = BridgeConfiguration()
            configuration.blitlineApplicationID = "app"
            configuration.postbackSecrets = [String(repeating: "k", count: 32)]
            func finding(base: String) -> CheckCommand.Finding? {
                configuration.postbackBaseURL = base
                return CheckCommand.settingsFindings(configuration).first { $0.subject == "POSTBACK_BASE_URL" }
            }
            #expect(finding(base: "http://127.0.0.1:8080")?.verdict == .failure)
            #expect(finding(base: "http://localhost:8080/blitline")?.verdict == .failure)
            #expect(finding(base: "http://10.1.2.3:8080")?.verdict == .warning)
            #expect(finding(base: "http://bridge:8080")?.verdict == .warning)
            #expect(finding(base: "https://hooks.example.com/blitline")?.verdict == .pass)
            configuration.blitlineAPIURL = "http://127.0.0.1:8090"
            #expect(finding(base: "http://127.0.0.1:8080")?.verdict == .pass)
            configuration.blitlineApplicationID = nil
            #expect(CheckCommand.settingsFindings(configuration).contains { $0.subject == "BLITLINE_APPLICATION_ID" && $0.verdict == .warning })
        }

        @Test(arguments: [
            ("localhost", CheckCommand.Reach.loopback), ("127.0.0.1", .loopback), ("127.8.9.10", .loopback),
            ("[::1]", .loopback), ("0.0.0.0", .loopback), ("10.0.0.1", .privateNetwork),
            ("172.16.0.1", .privateNetwork), ("172.32.0.1", .publicInternet), ("192.168.1.1", .privateNetwork),
            ("fd12::1", .privateNetwork), ("fe80::1", .privateNetwork), ("rabbit", .privateNetwork),
            ("bridge.svc.cluster.local", .privateNetwork), ("api.blitline.com", .publicInternet),
            ("8.8.8.8", .publicInternet), ("2001:db8::1", .publicInternet),
        ])
        func hostsAreClassifiedByWhoCanReachThem(host: String, reach: CheckCommand.Reach) {
            #expect(CheckCommand.reach(ofHost: host) == reach)
        }
    }
}

/// A test's own JOBS_QUEUE and events exchange names on the test broker, deleted afterwards, and
/// the tools run against them.
struct OperatorQueues: Sendable {
    static let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    let topology: Topology
    let connection: AMQPConnection
    let channel: AMQPChannel

    var jobsQueue: String { topology.jobsQueue }
    var deadQueue: String { topology.deadQueue }
    var eventsExchange: String { topology.eventsExchange }

    /// A dead letter as the bridge leaves it.
    struct Letter: Sendable {
        var name: String
        var messageID: String?
        var requestID: String
        var correlationID: String
        var error: String
        var body: [UInt8]

        /// How `list` names it.
        var shownName: String { messageID ?? "\(requestID) (no message id" }
    }

    static func with(_ label: String, _ body: (OperatorQueues) async throws -> Void) async throws {
        let suffix = TestEnvironment.uniqueSuffix()
        let connection = try await TestEnvironment.connect()
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        let queues = OperatorQueues(
            topology: Topology(
                jobsQueue: "test.\(label).\(suffix).jobs", eventsExchange: "test.\(label).\(suffix).events",
                jobTimeout: .seconds(30 * 60), queueType: TestEnvironment.queueType),
            connection: connection, channel: channel)
        let outcome: Result<Void, any Error>
        do {
            try await body(queues)
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        let cleanup = try await connection.openChannel()
        for queue in queues.topology.queues.map(\.name) { _ = try? await cleanup.deleteQueue(queue) }
        try? await cleanup.deleteExchange(queues.eventsExchange)
        await connection.close()
        try outcome.get()
    }

    func declare(_ queue: String, arguments: AMQPTable = [:]) async throws {
        try await channel.declareQueue(queue, durable: true, arguments: arguments)
    }

    func declareJobsQueue() async throws { try await declare(jobsQueue) }

    /// Dead letters as the bridge writes them: with `x-bridge-error`, after retries (`x-death`,
    /// `x-bridge-attempt`), the last without a message id (its generated id in a header).
    func publishDeadLetters(count: Int) async throws -> [Letter] {
        try await declare(deadQueue)
        var letters: [Letter] = []
        for index in 0..<count {
            let name = "letter-\(index)"
            let hasMessageID = index < count - 1
            let letter = Letter(
                name: hasMessageID ? name : "\(name)-generated (no message id; request id generated by the bridge)",
                messageID: hasMessageID ? name : nil, requestID: hasMessageID ? name : "\(name)-generated",
                correlationID: "order-\(index)", error: "rejected: Blitline refused job \(index)",
                body: Array("{\"src\": \"https://example.com/\(name).jpg\",\n \"functions\": []}".utf8))
            let headers: AMQPTable = [
                "traceparent": .string(Self.traceparent),
                "x-bridge-attempt": .int32(3),
                "x-death": .array([
                    .table(["count": .int64(2), "reason": .string("expired"), "queue": .string(topology.retryQueue(0))])
                ]),
                "x-bridge-error": .string(letter.error),
                BridgeHeader.requestID: .string(letter.requestID),
            ]
            try await channel.publish(
                letter.body, routingKey: deadQueue, mandatory: true,
                properties: AMQPProperties(
                    contentType: "application/json", headers: headers, deliveryMode: AMQPProperties.persistent,
                    correlationID: letter.correlationID, messageID: letter.messageID))
            letters.append(letter)
        }
        return letters
    }

    func depth(of queue: String) async throws -> UInt32 {
        try await channel.declareQueue(queue, passive: true).messageCount
    }

    /// Whether a queue exists, asked on a channel of its own (a 404 closes it).
    func exists(_ queue: String) async throws -> Bool {
        let probe = try await connection.openChannel()
        do {
            try await probe.declareQueue(queue, passive: true)
            try await probe.close()
            return true
        } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.notFound {
            return false
        }
    }

    /// Every message of `queue`, taken and acknowledged.
    func take(from queue: String) async throws -> [AMQPDelivery] {
        var taken: [AMQPDelivery] = []
        while let delivery = try await channel.get(queue: queue) {
            delivery.ack()
            taken.append(delivery)
        }
        return taken
    }

    /// The request ids in the dead-letter queue in order, left in place.
    func deadLetterIDs() async throws -> [String] {
        let reader = try await connection.openChannel()
        var ids: [String] = []
        while let delivery = try await reader.get(queue: deadQueue) {
            ids.append(RequestEnvelope(delivery.properties).requestID)
        }
        try await reader.close()
        return ids
    }

    /// Runs the bridge executable with these queue names.
    func tool(_ arguments: [String]) async throws -> ToolRun {
        try await Self.runTool(
            arguments,
            environment: [
                "AMQP_URL": try TestEnvironment.brokerURL, "JOBS_QUEUE": jobsQueue, "EVENTS_EXCHANGE": eventsExchange,
                "BLITLINE_APPLICATION_ID": "app",
            ])
    }

    /// What one run of the executable printed, and its exit status.
    struct ToolRun: Sendable, CustomStringConvertible {
        var status: Int32
        var output: String
        var errors: String

        var lines: [String] { output.split(separator: "\n").map(String.init) }
        var description: String { "exit \(status)\n--- stdout\n\(output)--- stderr\n\(errors)" }
    }

    /// Runs `blitline-bridge` with `arguments` and nothing but `environment`; killed after a minute.
    static func runTool(_ arguments: [String], environment: [String: String]) async throws -> ToolRun {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("blitline-bridge-tests")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let stem = directory.appendingPathComponent("tool-\(TestEnvironment.uniqueSuffix())").path
        _ = FileManager.default.createFile(atPath: stem + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: stem + ".err", contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.bridgeExecutable)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stem + ".out"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stem + ".err"))
        process.standardInput = FileHandle.nullDevice
        let (ended, continuation) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { continuation.yield($0.terminationStatus) }
        try process.run()
        let pid = process.processIdentifier
        let status = try await withThrowingTaskGroup(of: Int32?.self) { group in
            group.addTask { await ended.first { _ in true } }
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                kill(pid, SIGKILL)
                return nil
            }
            let status = try await group.next() ?? nil
            group.cancelAll()
            return status
        }
        let output = (try? String(contentsOfFile: stem + ".out", encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOfFile: stem + ".err", encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: stem + ".out")
        try? FileManager.default.removeItem(atPath: stem + ".err")
        return ToolRun(status: try #require(status, "blitline-bridge \(arguments) did not end within a minute"), output: output, errors: errors)
    }
}
