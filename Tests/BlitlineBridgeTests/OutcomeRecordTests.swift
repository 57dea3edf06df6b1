import AMQP
import Blitline
import Foundation
import Testing
import TestSupport

@testable import BlitlineBridge

/// What the outcomes stream holds (README, Topology and "Delivery guarantees"): one small record
/// per batch of confirmed events rather than a copy of each event, read back by every instance,
/// with the copies an earlier version's binding wrote still understood.
@Suite struct OutcomeRecordTests {
    @Test func aRecordNamesEveryRequestOfItsBatchWhateverTheIDs() throws {
        let ids = ["plain", "with \"quotes\" and \\", "line\nbreak", "ünïcødé ✓", String(repeating: "x", count: 300)]
        let records = OutcomeRecord.records(settling: ids)
        #expect(records.count == 1)
        let record = try #require(records.first)
        #expect(OutcomeRecord.requestIDs(in: record.body) == ids)
        #expect(record.properties.headers?[BridgeHeader.outcome]?.stringValue == OutcomeRecord.outcome)
        #expect(record.properties.timestamp != nil)
    }

    @Test func idsThatDoNotFitOneRecordShareTheNext() throws {
        let ids = (0..<OutcomeRecord.maxRequests).map { String(repeating: "\($0 % 10)", count: 250) + "-\($0)" }
        let records = OutcomeRecord.records(settling: ids)
        #expect(records.count > 1)
        #expect(records.allSatisfy { $0.body.count <= OutcomeRecord.maxBodyBytes })
        #expect(records.flatMap { OutcomeRecord.requestIDs(in: $0.body) ?? [] } == ids)
    }

    @Test func aBodyThatIsNotAnArrayOfIDsIsRefused() {
        #expect(OutcomeRecord.requestIDs(in: Array(#"["a", 1]"#.utf8)) == nil)
        #expect(OutcomeRecord.requestIDs(in: Array(#"{"a": "b"}"#.utf8)) == nil)
        #expect(OutcomeRecord.requestIDs(in: Array("[\"a\"".utf8)) == nil)
    }

    /// Sixty postbacks answered at once: the stream gets records naming each request once, fewer
    /// records than events, and no copy of any event.
    @Test func theStreamHoldsOneRecordPerBatchOfEventsAndNoEvent() async throws {
        try await BridgeHarness.run("outcome-records") { h in
            let bridge = try await h.startBridge()
            let requests = (0..<60).map { TestRequest.thumbnails("record-\($0)", index: $0 % 20) }
            let dropped = try await h.publishHoldingPostbacks(requests)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for postback in dropped {
                    group.addTask {
                        try await bridge.post(URL(string: postback.url)?.path ?? postback.url, body: postback.body).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses)")
            #expect(await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(30)), "\(h.diagnostics())")

            let messages = try await h.outcomesStreamMessages()
            let outcomes = messages.map { $0.properties.headers?[BridgeHeader.outcome]?.stringValue }
            #expect(outcomes.allSatisfy { $0 == OutcomeRecord.outcome }, "\(outcomes)")
            let named = messages.flatMap { OutcomeRecord.requestIDs(in: $0.body) ?? [] }
            #expect(named.sorted() == requests.map(\.id).sorted())
            print("outcome records: \(requests.count) events recorded in \(messages.count) stream messages")
            #expect(messages.count < requests.count, "one record per event: nothing was batched")
        }
    }

    /// A deadline message due now, for a request recorded by this version, one whose event an
    /// earlier version's binding copied into the stream, and one with no outcome: only the last
    /// gets a `timeout`.
    @Test func deadlinesKnowTheOutcomesOfEitherVersion() async throws {
        try await BridgeHarness.run("outcome-versions") { h in
            _ = try await h.startBridge()
            let stream = h.topology.outcomesStream
            let now = Date()
            let recorded = "recorded-\(TestEnvironment.uniqueSuffix())"
            let copied = "copied-\(TestEnvironment.uniqueSuffix())"
            let unsettled = "unsettled-\(TestEnvironment.uniqueSuffix())"
            let record = try #require(OutcomeRecord.records(settling: [recorded], at: now).first)
            try await h.publishRaw(record.body, to: stream, properties: record.properties)
            // An event as versions before 0.2 had the exchange copy it: the bridge's headers, a body.
            try await h.publishRaw(
                Array(repeating: UInt8(ascii: "x"), count: 600), to: stream,
                properties: AMQPProperties(
                    contentType: "application/cloudevents+json",
                    headers: [BridgeHeader.requestID: .string(copied), BridgeHeader.outcome: .string("completed")],
                    deliveryMode: AMQPProperties.persistent, messageID: copied + "/completed",
                    timestamp: UInt64(now.timeIntervalSince1970)))
            let submitted = Int64(now.timeIntervalSince1970 * 1000) - 60_000
            let jobs = [recorded, copied, unsettled].enumerated().map { index, id in
                #"{"request_id":"\#(id)","job_id":"job-\#(index)","submitted_at":\#(submitted),"deadline":\#(submitted + 1000),"application_key":"k"}"#
            }
            try await h.publishRaw(Array("[\(jobs.joined(separator: ","))]".utf8), to: h.topology.timeoutsQueue)

            #expect(
                await h.events.waitForEvents(for: [unsettled], endingWith: ["failed"], timeout: .seconds(30)),
                "\(h.diagnostics())")
            #expect(
                await h.waitUntilSettled(deadlines: true, timeout: .seconds(30)), "deadlines still held\n\(h.diagnostics())")
            try await h.barrier()
            #expect(h.events.events(for: unsettled).map(\.reason) == ["timeout"])
            #expect(h.events.events(for: recorded).isEmpty && h.events.events(for: copied).isEmpty, "\(h.events.idsByRequest)")
        }
    }

    /// The outcomes stream deleted under a running bridge that may not declare it again (a broker
    /// user without that right): the broker returns its record, so the postback is answered 503
    /// and Blitline retries; once the stream is declared again, a retry records the outcome, the
    /// ledger reads the new stream from its start, and the job has its one event and no timeout.
    /// (A bridge that may declares it again at once: `BridgeIsolationFaultTests`.)
    @Test func aStreamThatCannotBeDeclaredAgainHoldsPostbacksBackUntilItIs() async throws {
        // Blitline's retries after 20 ms, 60 ms, 300 ms and 12 s.
        try await BridgeBrokerUser.with { user in try await BridgeHarness.run("outcome-stream-deleted", retrySpeedFactor: 0.02) { h in
            var settings = try h.settings()
            settings.jobTimeout = "15s"
            settings.brokerURL = try user.url
            let bridge = try await h.startBridge(settings)
            let topology = Topology(
                jobsQueue: h.jobsQueue, eventsExchange: h.eventsExchange, jobTimeout: .seconds(15),
                timeoutGrace: .seconds(1), queueType: TestEnvironment.queueType)
            try await user.forbidDeclaring([topology.outcomesStream])
            let admin = try await TestEnvironment.connect()
            _ = try await admin.openChannel().deleteQueue(topology.outcomesStream)
            let request = TestRequest.thumbnails("stream-deleted")
            try await h.publish(request)
            #expect(
                await eventually(timeout: .seconds(20)) {
                    ((try? await h.simulator.stats()["postbacks_failed_attempts"]) ?? 0) >= 3
                }, "\(h.diagnostics())")
            #expect(try await bridge.metrics().value("blitline_bridge_postbacks_total", ["outcome": "unavailable"]) >= 1)
            #expect(
                bridge.logLines.contains {
                    $0.contains("the outcomes stream \(topology.outcomesStream) is gone and could not be declared again")
                },
                "\(bridge.logTail())")

            try await topology.declare(on: admin)
            await admin.close()
            #expect(
                await eventually(timeout: .seconds(30)) {
                    let named = (try? await h.outcomesStreamMessages())?.flatMap { OutcomeRecord.requestIDs(in: $0.body) ?? [] }
                    return named?.contains(request.id) == true
                }, "no record of \(request.id)\n\(h.diagnostics())")
            // Past the job's deadline (15 s, grace 1 s): the ledger read the record from the new stream.
            #expect(
                await h.waitUntilSettled(deadlines: true, timeout: .seconds(40)), "deadlines still held\n\(h.diagnostics())")
            try await h.barrier()
            #expect(h.events.idsByRequest[request.id] == ["\(request.id)/completed"], "\(h.events.idsByRequest)")
            #expect((try await h.simulator.stats()["postbacks_given_up"]) == 0)
            #expect(bridge.isRunning)
        } }
    }
}

extension BridgeHarness {
    /// Every message of the outcomes stream so far.
    func outcomesStreamMessages() async throws -> [AMQPDelivery] {
        let stream = topology.outcomesStream
        return try await streamMessages(stream) { end in
            try await publishRaw([], to: stream, properties: AMQPProperties(messageID: end))
        }
    }
}

/// Every message of a stream so far, read from its start up to a marker that `mark` puts there
/// (given the marker's message id).
func streamMessages(
    _ stream: String, timeout: Duration = .seconds(30), mark: (String) async throws -> Void
) async throws -> [AMQPDelivery] {
    let end = "end-of-test-\(TestEnvironment.uniqueSuffix())"
    try await mark(end)
    let connection = try await TestEnvironment.connect()
    let watchdog = Task {
        try await Task.sleep(for: timeout)
        await connection.close()
    }
    defer {
        watchdog.cancel()
        Task { await connection.close() }
    }
    var messages: [AMQPDelivery] = []
    let channel = try await connection.openChannel()
    for try await delivery in try await channel.consume(queue: stream, prefetch: 100, arguments: ["x-stream-offset": .string("first")]) {
        delivery.ack()
        if delivery.properties.messageID == end { return messages }
        messages.append(delivery)
    }
    throw StreamEnded()
}

struct StreamEnded: Error, CustomStringConvertible {
    var description: String { "the stream's consumer ended before the test's marker" }
}
