import AMQP
import Blitline
import Foundation
import Synchronization
import Testing
import TestSupport

@testable import BlitlineBridge

/// What real producers and downstream setups send (README, "What each kind of bad input gets"):
/// each case among normal requests, each checked for what a user would notice — exactly one
/// terminal event per request under one id, the requests behind it complete, Blitline saw no job
/// twice, no broker reconnect, `/readyz` 200 throughout, and the process alive.
@Suite(.serialized) struct BridgeIsolationFaultTests {
    /// Samples `/readyz` every 200 ms while a test runs.
    final class ReadinessProbe: Sendable {
        /// The statuses seen, in order (0: no answer, twice in a row).
        final class Answers: Sendable {
            private let statuses = Mutex<[Int]>([])
            private let failures = Mutex<[String]>([])
            func append(_ status: Int) { statuses.withLock { $0.append(status) } }
            func failed(_ error: any Error) { failures.withLock { $0.append("\(error)") } }
            var all: [Int] { statuses.withLock { $0 } }
            /// Why each request without an answer got none, retried ones included.
            var errors: [String] { failures.withLock { $0 } }
        }

        private let answers = Answers()
        private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

        init(_ bridge: BridgeProcess) {
            let sampling = Task { [answers] in
                while !Task.isCancelled {
                    // A request that gets no answer at all is tried again at once, as the
                    // shipped readiness probe (failureThreshold 2) would: a lone one is printed,
                    // two in a row count as not ready. Every answer must be 200.
                    var status = 0
                    for attempt in 1...2 where status == 0 && !Task.isCancelled {
                        do {
                            status = try await bridge.get("/readyz").status
                        } catch where !Task.isCancelled {
                            answers.failed(error)
                            print("/readyz sample, attempt \(attempt): no answer: \(error)")
                        } catch {}
                    }
                    // A sample that `stop` cut short is no sample: the bridge was not asked.
                    if status == 0 && Task.isCancelled { break }
                    answers.append(status)
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            task.withLock { $0 = sampling }
        }

        /// Stops sampling once it has taken more than three samples (a test that no longer sleeps
        /// may end sooner than that); returns how many it took and what was not 200.
        func stop() async -> (samples: Int, notReady: [Int], errors: [String]) {
            _ = await eventually(timeout: .seconds(5)) { answers.all.count > 3 }
            let task = task.withLock { $0 }
            task?.cancel()
            await task?.value
            let all = answers.all
            return (all.count, all.filter { $0 != 200 }, answers.errors)
        }
    }

    /// The checks every case ends with.
    func expectUndisturbed(
        _ bridge: BridgeProcess, _ probe: ReadinessProbe, _ h: BridgeHarness,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let readiness = await probe.stop()
        #expect(readiness.samples > 3, sourceLocation: sourceLocation)
        #expect(
            readiness.notReady.isEmpty, "/readyz answered \(readiness.notReady); errors: \(readiness.errors)",
            sourceLocation: sourceLocation)
        #expect(bridge.isRunning, "the bridge died:\n\(bridge.logTail())", sourceLocation: sourceLocation)
        let reconnects = try await bridge.metrics().value("blitline_bridge_broker_reconnects_total")
        #expect(reconnects == 0, "\(h.diagnostics())", sourceLocation: sourceLocation)
    }

    /// Each request's events all carry one id, and no event is for anything else.
    func expectOneIDEach(_ requests: [TestRequest], _ h: BridgeHarness, sourceLocation: SourceLocation = #_sourceLocation) {
        let ids = h.events.idsByRequest
        for request in requests {
            #expect(ids[request.id]?.count == 1, "\(request.id.prefix(40)): \(ids[request.id] ?? [])", sourceLocation: sourceLocation)
        }
    }

    func invalid(_ id: String) -> TestRequest { TestRequest.raw(id, Array("not json".utf8)) }

    @Test func requestIDsTooLongForAMQPFailAloneAndNothingIsSubmittedTwice() async throws {
        try await BridgeHarness.run("long-ids") { h in
            let bridge = try await h.startBridge()
            let probe = ReadinessProbe(bridge)
            let longValid = TestRequest.thumbnails(String(repeating: "v", count: 250), index: 1)
            let longInvalid = invalid(String(repeating: "i", count: 250))
            let normal = (0..<10).map { TestRequest.thumbnails("long-ids-normal-\($0)", index: $0) }
            let outcomes = try await h.outcomes(of: [longValid, longInvalid] + normal)
            outcomes.expectEachCompleted(normal)
            for request in [longValid, longInvalid] {
                let event = outcomes.single(request)
                #expect(event?.reason == "invalid_request")
                #expect(event?.errors.first?.contains("at most 200") == true, "\(event?.errors ?? [])")
                #expect(event?.id == request.id + "/failed", "the event's JSON carries the id in full")
            }
            #expect(try await h.deadLetters(count: 2).count == 2)
            #expect(try await h.simulator.stats()["jobs_accepted"] == normal.count + h.sentinelsPublished)
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    /// Short strings (`message_id`, `correlation_id`) that are not UTF-8: each bad byte is
    /// repaired into three, past the 255 bytes a short string holds. The copies the bridge
    /// publishes (dead letters, retries) leave such a property out, so they are taken: the invalid
    /// requests are dead-lettered, the valid one goes through a retry and completes, and none holds
    /// a `PREFETCH` slot from the requests behind them.
    @Test func shortStringsThatAreNotUTF8LeaveNoCopyUnpublishable() async throws {
        try await BridgeHarness.run("not-utf8") { h in
            var settings = try h.settings()
            settings.extra["PREFETCH"] = "4"
            let bridge = try await h.startBridge(settings)
            let probe = ReadinessProbe(bridge)
            let garbage = [UInt8](repeating: 0xFF, count: 100)
            let repaired = String(repeating: "\u{FFFD}", count: 100)
            // The first submit fails (HTTP 500): the valid request goes through a retry queue.
            try await h.simulator.control(["fail_submits": 1])
            let valid = TestRequest.thumbnails("not-utf8-valid", index: 1)
            let invalidIDs = [repaired] + (0..<3).map { "not-utf8-invalid-\($0)" }
            let publisher = try RawAMQPPublisher(url: try TestEnvironment.brokerURL)
            try publisher.publish(
                routingKey: h.jobsQueue, correlationID: garbage, messageID: Array(valid.id.utf8), body: valid.body)
            try publisher.publish(routingKey: h.jobsQueue, correlationID: nil, messageID: garbage, body: valid.body)
            for id in invalidIDs.dropFirst() {
                try publisher.publish(
                    routingKey: h.jobsQueue, correlationID: garbage, messageID: Array(id.utf8), body: Array("not json".utf8))
            }
            try publisher.close()
            let normal = (0..<8).map { TestRequest.thumbnails("not-utf8-normal-\($0)", index: $0) }
            let outcomes = try await h.outcomes(of: normal + [valid])
            outcomes.expectEachCompleted(normal + [valid])
            #expect(await h.events.waitForEvents(for: invalidIDs, timeout: .seconds(10)), "\(h.diagnostics())")
            for id in invalidIDs { #expect(h.events.events(for: id).map(\.reason) == ["invalid_request"], "\(id)") }
            #expect(try await h.deadLetters(count: invalidIDs.count, timeout: .seconds(20)).count == invalidIDs.count)
            #expect(await h.waitUntilSettled(timeout: .seconds(20)), "requests still held\n\(h.diagnostics())")
            #expect(try await h.simulator.stats()["jobs_accepted"] == normal.count + 1 + h.sentinelsPublished)
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    @Test func aProducerOfAnotherBrokerUserIsCopiedWithoutItsUserID() async throws {
        let user = "producer-\(TestEnvironment.uniqueSuffix())"
        try await TestEnvironment.controlBroker("ctl", "add_user", user, "producer-password")
        try await TestEnvironment.controlBroker("ctl", "set_permissions", "-p", "/", user, ".*", ".*", ".*")
        try await withUndo({ _ = try? await TestEnvironment.controlBroker("ctl", "delete_user", user) }) {
            try await BridgeHarness.run("user-id") { h in
                let bridge = try await h.startBridge()
                let probe = ReadinessProbe(bridge)
                // The first submit fails (HTTP 500): that request goes through a retry queue.
                try await h.simulator.control(["fail_submits": 1])
                let retried = TestRequest.thumbnails("user-id-retried", index: 1)
                let invalidRequest = invalid("user-id-invalid")
                let producerURL = try TestEnvironment.brokerURL.replacingOccurrences(
                    of: "guest:guest@", with: "\(user):producer-password@")
                let producer = try await AMQPConnection.connect(url: producerURL)
                let channel = try await producer.openChannel()
                try await channel.enableConfirms()
                for request in [retried, invalidRequest] {
                    var properties = request.properties
                    properties.userID = user
                    try await channel.publish(request.body, routingKey: h.jobsQueue, properties: properties)
                }
                await producer.close()
                let normal = (0..<5).map { TestRequest.thumbnails("user-id-normal-\($0)", index: $0) }
                let outcomes = try await h.outcomes(of: normal)
                #expect(
                    await h.events.waitForEvents(for: [retried.id, invalidRequest.id], timeout: .seconds(30)),
                    "\(h.diagnostics())")
                #expect(await h.waitUntilSettled(timeout: .seconds(30)), "requests still held\n\(h.diagnostics())")
                try await h.barrier()
                outcomes.expectEachCompleted(normal)
                #expect(h.events.events(for: retried.id).map(\.status) == ["completed"])
                #expect(h.events.events(for: invalidRequest.id).map(\.reason) == ["invalid_request"])
                let dead = try await h.deadLetters(count: 1)
                #expect(dead.first?.properties.userID == nil)
                #expect(dead.first?.properties.messageID == invalidRequest.id)
                #expect(try await h.simulator.stats()["jobs_accepted"] == normal.count + 1 + h.sentinelsPublished)
                try await expectUndisturbed(bridge, probe, h)
            }
        }
    }

    @Test func aFullDownstreamQueueDelaysEventsAndResubmitsNothing() async throws {
        // Postback retries on Blitline's own schedule (1 s, 3 s, 15 s) outlast the full queue.
        try await BridgeHarness.run("full-downstream", retrySpeedFactor: 1) { h in
            let bridge = try await h.startBridge()
            let probe = ReadinessProbe(bridge)
            let invalids = (0..<4).map { invalid("full-invalid-\($0)") }
            let valids = (0..<4).map { TestRequest.thumbnails("full-valid-\($0)", index: $0) }
            let all = invalids + valids
            #expect(
                try await h.publish(all, whileEventsAreRefusedFor: .seconds(15)),
                "no event for \(h.events.missing(all.map(\.id)))\n\(h.diagnostics())")
            // Every request settled: all the events and dead letters of their handling are out.
            #expect(await h.waitUntilSettled(timeout: .seconds(60)), "requests still held\n\(h.diagnostics())")
            try await h.barrier()
            expectOneIDEach(all, h)
            for request in valids { #expect(h.events.events(for: request.id).allSatisfy { $0.status == "completed" }) }
            for request in invalids { #expect(h.events.events(for: request.id).allSatisfy { $0.reason == "invalid_request" }) }
            // A dead letter is written once its event is out: after the next retry past the full queue.
            #expect(
                try await h.deadLetters(count: invalids.count, timeout: .seconds(60)).count == invalids.count,
                "each dead-lettered")
            #expect(try await h.depth(of: h.deadQueue) == 0, "and only once")
            #expect(
                try await h.simulator.stats()["jobs_accepted"] == valids.count + h.sentinelsPublished,
                "nothing submitted twice")
            #expect(try await h.messagesHeld(in: h.jobsQueue) == 0, "every request was settled")
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    /// A downstream queue that refuses events for longer than Blitline retries a postback: each
    /// result is held by the bridge (answered 200), published once the queue takes events again,
    /// and its job gets no `timeout`, though its deadline passes meanwhile.
    @Test func aResultRefusedLongerThanBlitlineRetriesIsHeldNotLost() async throws {
        // Blitline's schedule at a hundredth: retries after 10 ms, 30 ms, 150 ms and 6 s.
        try await BridgeHarness.run("held-results", retrySpeedFactor: 0.01) { h in
            var settings = try h.settings()
            settings.jobTimeout = "12s"
            let bridge = try await h.startBridge(settings)
            let requests = (0..<3).map { TestRequest.thumbnails("held-\($0)", index: $0) }
            // Past Blitline's last retry and past each deadline (12 s, grace 1 s).
            #expect(
                try await h.publish(requests, whileEventsAreRefusedFor: .seconds(16)),
                "no event taken by every queue for some of \(requests.map(\.id))\n\(h.diagnostics())")
            try await h.expectResultsHeld(requests, by: bridge)
            let simulator = try await h.simulator.stats()
            #expect(simulator["postbacks_given_up"] == 0, "every postback was answered 200: \(simulator)")
        }
    }

    /// A result held while its `reply_to` queue refused it too reaches that queue once, when the
    /// events exchange takes it, though the reply queue had room long before.
    @Test func aHeldResultReachesItsReplyQueueOnce() async throws {
        try await BridgeHarness.run("held-replies", retrySpeedFactor: 0.01) { h in
            let bridge = try await h.startBridge()
            let reply = h.jobsQueue + ".held-replies"
            let broker = try await TestEnvironment.connect()
            let channel = try await broker.openChannel()
            try await channel.declareQueue(
                reply, arguments: ["x-max-length": .int64(0), "x-overflow": .string("reject-publish")])
            var requests = (0..<3).map { TestRequest.thumbnails("held-reply-\($0)", index: $0) }
            for index in requests.indices { requests[index].replyTo = reply }
            #expect(
                try await h.publish(requests, whileEventsAreRefusedFor: .seconds(12)) {
                    try await Task.sleep(for: .seconds(3))  // each result held, for the reply queue too
                    _ = try await channel.deleteQueue(reply)
                    _ = try await channel.declareQueue(reply)
                },
                "no event taken by every queue for some of \(requests.map(\.id))\n\(h.diagnostics())")
            try await h.expectResultsHeld(requests, by: bridge)
            let copies = try await h.depth(of: reply)
            #expect(copies == requests.count, "\(copies) copies for \(requests.count) requests in the reply queue")
            // Each held event was refused again at least once: put back, and counted as a setback.
            let setbacks = try await bridge.metrics().value("blitline_bridge_request_setbacks_total")
            #expect(setbacks >= Double(requests.count))
            _ = try await channel.deleteQueue(reply)
            await broker.close()
        }
    }

    /// A `reply_to` queue that refuses the event while the events exchange takes it: the event is
    /// in the broker, so the job is settled and its deadline yields no `timeout` (the postback is
    /// still answered 503, so that Blitline's retries give the reply queue another chance).
    @Test func aRefusedReplyLeavesACompletedJobSettled() async throws {
        try await BridgeHarness.run("refused-reply") { h in
            var settings = try h.settings()
            settings.jobTimeout = "3s"
            let bridge = try await h.startBridge(settings)
            let full = h.jobsQueue + ".full-reply"
            let broker = try await TestEnvironment.connect()
            let channel = try await broker.openChannel()
            try await channel.declareQueue(
                full, arguments: ["x-max-length": .int64(0), "x-overflow": .string("reject-publish")])
            var requests = (0..<3).map { TestRequest.thumbnails("refused-reply-\($0)", index: $0) }
            for index in requests.indices { requests[index].replyTo = full }
            try await h.publish(requests)
            #expect(
                await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(30)),
                "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
            // Past each deadline (3 s) and its grace (1 s), with room for the deadline's handling.
            try await Task.sleep(for: .seconds(10))
            _ = try await channel.deleteQueue(full)
            await broker.close()
            let metrics = try await bridge.metrics()
            #expect(metrics.value("blitline_bridge_postbacks_total", ["outcome": "unavailable"]) >= 1)
            for request in requests {
                let reasons = h.events.events(for: request.id).map { $0.reason ?? $0.status ?? "?" }
                #expect(!reasons.contains("timeout"), "\(request.id): \(reasons)")
                #expect(reasons.contains("completed"), "\(request.id): \(reasons)")
            }
        }
    }

    @Test func deadlinesRefusedPastJobTimeoutNeverMakeBlitlineRunTheJobsAgain() async throws {
        try await BridgeHarness.run("refused-deadlines") { h in
            var settings = try h.settings()
            settings.jobTimeout = "3s"
            let bridge = try await h.startBridge(settings)
            let probe = ReadinessProbe(bridge)
            // The broker refuses every deadline (a policy makes the deadlines queue full), as it did
            // for over 36 s after a cluster lost the node leading that queue (README).
            let deadlines = Topology(
                jobsQueue: h.jobsQueue, eventsExchange: h.eventsExchange, jobTimeout: .seconds(3), timeoutGrace: .seconds(1),
                queueType: TestEnvironment.queueType
            ).deadlinesQueue
            let policy = "refuse-" + h.jobsQueue
            _ = try await TestEnvironment.brokerCtl(
                "set_policy", policy, "^" + NSRegularExpression.escapedPattern(for: deadlines) + "$",
                #"{"max-length":0,"overflow":"reject-publish"}"#, "--apply-to", "queues", "--priority", "10")
            // A quorum queue goes over its limit by one message before it refuses: the first
            // request's deadline gets in, and the broker refuses every one after it.
            let first = TestRequest.thumbnails("refused-deadline-first", index: 0)
            let completing = [first] + (1..<4).map { TestRequest.thumbnails("refused-deadline-\($0)", index: $0) }
            try await h.publish(first)
            #expect(await h.events.waitForEvents(for: [first.id], timeout: .seconds(30)), "\(h.diagnostics())")
            try await h.publish(Array(completing.dropFirst()))
            #expect(
                await h.events.waitForEvents(for: completing.map(\.id), timeout: .seconds(30)),
                "no event for \(h.events.missing(completing.map(\.id)))\n\(h.diagnostics())")
            // One job whose result never comes.
            try await h.simulator.control(["drop_postbacks": 1])
            let lost = TestRequest.thumbnails("refused-deadline-lost", index: 9)
            try await h.publish(lost)
            let all = completing + [lost]
            // Every refused deadline is a setback. A completed request that comes back settled is
            // acknowledged; the lost one is put back after 1 s, then 5 s, and comes back past its
            // 3 s deadline.
            #expect(await h.events.waitForEvents(for: [lost.id], timeout: .seconds(30)), "\(h.diagnostics())")
            let setbacks = try await bridge.metrics().value("blitline_bridge_request_setbacks_total")
            #expect(setbacks >= Double(completing.count - 1 + 2), "\(h.diagnostics())")
            _ = try await TestEnvironment.brokerCtl("clear_policy", policy)
            #expect(await h.waitUntilSettled(timeout: .seconds(30)), "requests still held\n\(h.diagnostics())")
            try await h.barrier()
            expectOneIDEach(all, h)
            for request in completing { #expect(h.events.events(for: request.id).map(\.status) == ["completed"]) }
            #expect(h.events.events(for: lost.id).map(\.reason) == ["timeout"])
            #expect(
                try await h.simulator.stats()["jobs_accepted"] == all.count + h.sentinelsPublished,
                "nothing submitted twice")
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    @Test func aRequestWhoseDeadlineAndEveryCopyAreRefusedIsHeldNotSubmittedAgain() async throws {
        try await BridgeBrokerUser.with { user in try await BridgeHarness.run("refused-copies") { h in
            var settings = try h.settings()
            settings.brokerURL = try user.url
            let bridge = try await h.startBridge(settings)
            let probe = ReadinessProbe(bridge)
            // The deadlines queue and every retry queue gone, and the bridge may not declare them
            // again, so that the broker returns what is published to them: a request whose job
            // Blitline accepted can neither schedule its deadline nor be put back carrying its job
            // id. The message in the jobs queue does not carry it: handing that back would submit
            // the job again.
            let gone = [h.topology.deadlinesQueue] + Topology.retryDelays.indices.map(h.topology.retryQueue)
            try await user.forbidDeclaring(gone)
            let broker = try await TestEnvironment.connect()
            let channel = try await broker.openChannel()
            for queue in gone { _ = try await channel.deleteQueue(queue) }
            let all = (0..<6).map { TestRequest.thumbnails("refused-copies-\($0)", index: $0) }
            try await h.publish(all)
            #expect(await h.events.waitForEvents(for: all.map(\.id), timeout: .seconds(30)), "\(h.diagnostics())")
            try await Task.sleep(for: .seconds(12))  // the copies refused over and over
            let setbacks = try await bridge.metrics().value("blitline_bridge_request_setbacks_total")
            #expect(setbacks >= Double(4 * all.count), "\(h.diagnostics())")
            try await h.topology.declare(on: broker)
            await broker.close()
            #expect(await h.waitUntilSettled(timeout: .seconds(30)), "requests still held\n\(h.diagnostics())")
            try await h.barrier()
            expectOneIDEach(all, h)
            for request in all { #expect(h.events.events(for: request.id).map(\.status) == ["completed"]) }
            #expect(
                try await h.simulator.stats()["jobs_accepted"] == all.count + h.sentinelsPublished,
                "nothing submitted twice")
            try await expectUndisturbed(bridge, probe, h)
        } }
    }

    /// Queues of the bridge's own deleted while it runs (an operator's slip, a definitions import):
    /// each is declared again at the first publish that misses it, the outcomes stream is read again,
    /// and every request still gets its one right event: no job that completed is timed out, a job
    /// whose result never comes is, none is submitted twice, and the session is never torn down.
    @Test func itsOwnQueuesDeletedWhileItRunsAreDeclaredAgainAndNothingIsLost() async throws {
        try await BridgeHarness.run("deleted-queues") { h in
            var settings = try h.settings()
            settings.jobTimeout = "4s"
            let bridge = try await h.startBridge(settings)
            let probe = ReadinessProbe(bridge)
            let before = (0..<3).map { TestRequest.thumbnails("deleted-before-\($0)", index: $0) }
            try await h.publish(before)
            #expect(
                await h.events.waitForEvents(for: before.map(\.id), timeout: .seconds(20)),
                "no event for \(h.events.missing(before.map(\.id)))\n\(h.diagnostics())")
            let topology = Topology(
                jobsQueue: h.jobsQueue, eventsExchange: h.eventsExchange, jobTimeout: .seconds(4),
                timeoutGrace: .seconds(1), queueType: TestEnvironment.queueType)
            let deleted = [topology.deadlinesQueue, topology.outcomesStream, topology.deadQueue, topology.retryQueue(0)]
            let broker = try await TestEnvironment.connect()
            let channel = try await broker.openChannel()
            for queue in deleted { _ = try await channel.deleteQueue(queue) }

            // The next submission fails, so these requests wait in the deleted retry queue.
            try await h.simulator.control(["fail_submits": 1])
            let after = (0..<3).map { TestRequest.thumbnails("deleted-after-\($0)", index: $0 + 3) }
            let invalidRequest = invalid("deleted-invalid")
            try await h.publish(after + [invalidRequest])
            #expect(
                await h.events.waitForEvents(for: (after + [invalidRequest]).map(\.id), timeout: .seconds(30)),
                "no event for \(h.events.missing((after + [invalidRequest]).map(\.id)))\n\(h.diagnostics())")
            // A job whose result never comes still gets its timeout: its deadline message, the
            // outcomes stream and the ledger reading it all work again.
            try await h.simulator.control(["drop_postbacks": 1])
            let lost = TestRequest.thumbnails("deleted-lost", index: 6)
            try await h.publish(lost)
            #expect(
                await h.events.waitForEvents(for: [lost.id], endingWith: ["failed"], timeout: .seconds(30)),
                "no timeout for a job whose result never came\n\(h.diagnostics())")
            // Every other deadline (4 s and a grace of 1 s) decided too.
            #expect(
                await h.waitUntilSettled(deadlines: true, timeout: .seconds(30)), "deadlines still held\n\(h.diagnostics())")
            try await h.barrier()

            let all = before + after + [invalidRequest, lost]
            expectOneIDEach(all, h)
            for request in before + after {
                let reasons = h.events.events(for: request.id).map { $0.reason ?? $0.status ?? "?" }
                #expect(reasons.allSatisfy { $0 == "completed" }, "\(request.id): \(reasons)")
            }
            #expect(h.events.events(for: invalidRequest.id).map(\.reason) == ["invalid_request"])
            #expect(h.events.events(for: lost.id).map(\.reason) == ["timeout"])
            for queue in deleted {
                #expect((try? await h.depth(of: queue)) != nil, "\(queue) was not declared again")
            }
            #expect(try await h.deadLetters(count: 1).count == 1, "the invalid request was dead-lettered")
            #expect(
                try await h.simulator.stats()["jobs_accepted"] == before.count + after.count + 1 + h.sentinelsPublished,
                "nothing submitted twice")
            try await expectUndisturbed(bridge, probe, h)
            _ = try? await channel.deleteQueue(topology.deadlinesQueue)
            await broker.close()
        }
    }

    /// The events exchange deleted under a running bridge, for longer than Blitline retries and
    /// past the jobs' deadlines: the bridge does not declare it again (the downstream bindings
    /// went with it), so each result is held at its first postback until the exchange and its
    /// bindings are back, then published, and no job gets a `timeout` or a second id.
    @Test func aDeletedEventsExchangeIsWaitedForAndNoResultIsLost() async throws {
        // Blitline's schedule at a hundredth: retries after 10 ms, 30 ms, 150 ms and 6 s.
        try await BridgeHarness.run("deleted-exchange", retrySpeedFactor: 0.01) { h in
            var settings = try h.settings()
            settings.jobTimeout = "6s"
            let bridge = try await h.startBridge(settings)
            let probe = ReadinessProbe(bridge)
            let broker = try await TestEnvironment.connect()
            let channel = try await broker.openChannel()
            try await channel.deleteExchange(h.eventsExchange)
            let requests = (0..<3).map { TestRequest.thumbnails("deleted-exchange-\($0)", index: $0) }
            try await h.publish(requests)
            try await Task.sleep(for: .seconds(12))  // past Blitline's last retry and each deadline (6 s, grace 1 s)
            // Whoever owns the downstream bindings declares the exchange and binds again.
            try await channel.declareExchange(h.eventsExchange, type: "topic", durable: true)
            try await channel.bindQueue(h.eventsQueue, exchange: h.eventsExchange, routingKey: "job.#")
            #expect(
                await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(30)),
                "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
            try await h.expectResultsHeld(requests, by: bridge)
            // Each result held at its first postback: no close of the shared channel failed a hold.
            let simulator = try await h.simulator.stats()
            #expect(simulator["postbacks_failed_attempts"] == 0, "\(simulator)")
            try await expectUndisturbed(bridge, probe, h)
            await broker.close()
        }
    }

    @Test func garbageInTheBridgesOwnHeadersIsNotBelieved() async throws {
        try await BridgeHarness.run("garbage-headers") { h in
            let bridge = try await h.startBridge()
            let probe = ReadinessProbe(bridge)
            // Each first submit fails (HTTP 500), so the attempt header is read to retry. Every
            // submit fails until each request has been put back once: the bridge may send the six
            // in any number of batches, so a count of failed HTTP requests would not say which.
            let values: [AMQPFieldValue] = [
                .int64(Int64.min), .int64(Int64.max), .int32(-1), .int32(0), .string("nine"), .uint64(UInt64.max),
            ]
            try await h.simulator.control(["fail_submit_fraction": 1])
            var requests: [TestRequest] = []
            for (index, value) in values.enumerated() {
                var request = TestRequest.thumbnails("garbage-attempt-\(index)", index: index)
                request.headers = [
                    "x-bridge-attempt": value, "x-bridge-job-id": .string("forged/job"),
                    "x-bridge-failure": .string("pwned"), "x-bridge-redeliveries": value,
                ]
                requests.append(request)
            }
            try await h.publish(requests)
            #expect(
                await eventually(timeout: .seconds(20)) {
                    let retries = try? await bridge.metrics().value("blitline_bridge_submit_retries_total")
                    return (retries ?? 0) >= Double(requests.count)
                }, "the first submits were not all retried\n\(h.diagnostics())")
            try await h.simulator.control(["fail_submit_fraction": 0])
            #expect(
                await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(30)),
                "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
            try await h.barrier()
            expectOneIDEach(requests, h)
            // A request that believed its header would have run out of attempts (`submit_failed`).
            for request in requests {
                let event = h.events.events(for: request.id).first
                #expect(event?.status == "completed", "\(event?.errors ?? [])")
            }
            #expect(try await h.simulator.stats()["jobs_accepted"] == requests.count + h.sentinelsPublished)
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    @Test func aTraceparentThatIsNotW3CIsIgnoredAndTheJobStillCompletes() async throws {
        try await BridgeHarness.run("traceparent") { h in
            let bridge = try await h.startBridge()
            let probe = ReadinessProbe(bridge)
            var long = TestRequest.thumbnails("traceparent-long", index: 1)
            long.headers = ["traceparent": .string("00-" + String(repeating: "a", count: 13_000))]
            var malformed = TestRequest.thumbnails("traceparent-malformed", index: 2)
            malformed.headers = ["traceparent": .string("01-xyz")]
            let normal = TestRequest.thumbnails("traceparent-normal", index: 3)
            let outcomes = try await h.outcomes(of: [long, malformed, normal])
            for request in [long, malformed] {
                let event = outcomes.single(request)
                #expect(event?.status == "completed", "\(event?.errors ?? [])")
                #expect(event?.data?["completed_via"]?.stringValue == "postback")
                #expect(event?.properties.headers?["traceparent"] == nil)
            }
            #expect(outcomes.single(normal)?.status == "completed")
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    @Test func threeRequestsBlitlineRefusesInOneBatchAreEachSubmittedOnce() async throws {
        try await BridgeHarness.run("refused-batch", simulator: { $0.allowedApplicationIDs = [BridgeHarness.applicationID] }) { h in
            let bridge = try await h.startBridge()
            let probe = ReadinessProbe(bridge)
            // Eight slow submissions take every slot; the three refused ones wait, then go together.
            try await h.simulator.control(["submit_latency_ms": 1500])
            let first = (0..<8).map { TestRequest.thumbnails("refused-batch-normal-\($0)", index: $0) }
            let refused = (0..<3).map { TestRequest.thumbnails("refused-batch-stolen-\($0)", index: $0, applicationID: "stolen") }
            try await h.publish(first)
            // All eight in hand (the bridge may send them in fewer, batched requests, so the
            // simulator's request count is no measure); each is held 1.5 s by its slow submission.
            #expect(
                await eventually(timeout: .seconds(20)) {
                    guard let metrics = try? await bridge.metrics() else { return false }
                    return metrics.value("blitline_bridge_requests_in_flight") >= Double(first.count)
                }, "the eight slow submissions did not all start")
            _ = try await h.outcomes(of: refused)
            #expect(await h.events.waitForEvents(for: first.map(\.id), timeout: .seconds(30)))
            // Every request settled: none can be submitted again.
            #expect(await h.waitUntilSettled(timeout: .seconds(30)), "requests still held\n\(h.diagnostics())")
            try await h.barrier()
            for request in refused { #expect(h.events.events(for: request.id).map(\.reason) == ["rejected"]) }
            let stats = try await h.simulator.stats()
            #expect(stats["jobs_rejected"] == refused.count, "each refused job was submitted once")
            #expect(stats["jobs_accepted"] == first.count + h.sentinelsPublished)
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    @Test func aRequestRedeliveredTooOftenIsDeadLetteredNotSubmittedAgain() async throws {
        try await BridgeHarness.run("redeliveries") { h in
            var settings = try h.settings()
            settings.extra["MAX_REDELIVERIES"] = "1"
            settings.extra["PREFETCH"] = "1"
            // Every submit takes long enough for the bridge to die while holding the request.
            try await h.simulator.control(["submit_latency_ms": 60_000])
            let request = TestRequest.thumbnails("redelivered", index: 1)
            try await h.publish(request)
            var bridge = try await h.startBridge(settings)
            for _ in 0..<2 {
                #expect(await eventually(timeout: .seconds(20)) {
                    (try? await h.simulator.stats()["submit_requests"]) ?? 0 >= 1
                })
                bridge.signal(SIGKILL)
                _ = await bridge.waitForExit(timeout: .seconds(5))
                try await h.simulator.control(["reset_stats": true])
                bridge = try await h.restart(bridge)
            }
            #expect(await h.events.waitForEvents(for: [request.id], timeout: .seconds(30)), "\(h.diagnostics())")
            let event = h.events.events(for: request.id).first
            #expect(event?.reason == "submit_failed")
            #expect(event?.errors.first?.contains("not submitted again") == true, "\(event?.errors ?? [])")
            let dead = try await h.deadLetters(count: 1)
            #expect(dead.first?.properties.messageID == request.id)
            #expect(try await h.simulator.stats()["submit_requests"] == 0, "not submitted a third time")
        }
    }

    @Test func requestsLargerThanTheLimitAreNeverHeldInMemory() async throws {
        try await BridgeHarness.run("large-requests") { h in
            let bridge = try await h.startBridge()
            let probe = ReadinessProbe(bridge)
            let before = bridge.peakResidentBytes ?? 0
            let large = (0..<20).map { TestRequest.raw("large-\($0)", [UInt8](repeating: UInt8(ascii: " "), count: 15 << 20)) }
            let normal = (0..<5).map { TestRequest.thumbnails("large-normal-\($0)", index: $0) }
            let outcomes = try await h.outcomes(of: large + normal, timeout: .seconds(90))
            outcomes.expectEachCompleted(normal)
            for request in large {
                let event = outcomes.single(request)
                #expect(event?.reason == "invalid_request")
                #expect(event?.errors.first == "the request is 15728640 bytes; at most 1048576 bytes are accepted")
            }
            let peak = try #require(bridge.peakResidentBytes)
            print("large-requests: bridge peak RSS \(before >> 20) MiB before, \(peak >> 20) MiB after 20 × 15 MiB requests")
            #expect(peak < before + 48 << 20, "peak RSS \(peak >> 20) MiB: the 15 MiB bodies were never held")
            let dead = try await h.deadLetters(count: large.count, timeout: .seconds(30))
            #expect(dead.count == large.count)
            // A quorum jobs queue dead-letters the request whole (the broker still has its body);
            // on classic queues the dead letter keeps the properties only.
            let kept = TestEnvironment.queueType == .quorum ? 15 << 20 : 0
            #expect(dead.allSatisfy { $0.body.count == kept }, "\(dead.map(\.body.count))")
            try await expectUndisturbed(bridge, probe, h)
        }
    }

    @Test func prefetchRequestsAtTheSizeLimitStayWithinAPodsMemory() async throws {
        try await BridgeHarness.run("limit-sized") { h in
            let bridge = try await h.startBridge()
            // PREFETCH (64) requests of just under MAX_REQUEST_BYTES (1 MiB): valid JSON that
            // Blitline refuses (its limit is 250,000 characters), so each is held, submitted, failed.
            let padding = String(repeating: "p", count: 1_048_576 - 200)
            let requests = (0..<64).map { index in
                TestRequest.raw(
                    "limit-sized-\(index)",
                    Array(#"{"src":"https://example.com/a.png","functions":[{"name":"no_op"}],"note":"\#(padding)"}"#.utf8))
            }
            #expect(requests.allSatisfy { $0.body.count <= 1_048_576 })
            let outcomes = try await h.outcomes(of: requests, timeout: .seconds(90))
            for request in requests { #expect(outcomes.single(request)?.reason == "rejected") }
            let peak = try #require(bridge.peakResidentBytes)
            print("limit-sized: bridge peak RSS \(peak >> 20) MiB with 64 requests of 1 MiB in hand")
            #expect(peak < 256 << 20, "peak RSS \(peak >> 20) MiB")
        }
    }
}
