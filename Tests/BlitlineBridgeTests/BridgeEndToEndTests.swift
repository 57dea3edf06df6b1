import AMQP
import Blitline
import Foundation
import Testing
import TestSupport

@testable import BlitlineBridge

extension BridgeProcessTests {
    /// The bridge process end to end against the test broker and the simulator: requests in, events
    /// out (README, "Messages" and "Delivery guarantees"). Every test has its own queues, exchange and simulator.
    @Suite struct BridgeEndToEndTests {
        static let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

        @Test func everyValidRequestCompletesOnceWithAFullCloudEvent() async throws {
            try await BridgeHarness.run("happy") { h in
                try await h.startBridge()
                var requests = (0..<20).map { TestRequest.thumbnails("happy-\($0)", index: $0) }
                requests[1].correlationID = "order-1"
                requests[2].replyTo = h.replyQueue
                requests[3].headers = ["traceparent": .string(Self.traceparent)]
                requests[4].correlationID = "order-4"
                requests[4].replyTo = h.replyQueue
                requests[4].headers = ["traceparent": .string(Self.traceparent)]
                let outcomes = try await h.outcomes(of: requests)
                outcomes.expectEachCompleted(requests)
                #expect(outcomes.events.allSatisfy { $0.exchange == h.eventsExchange })
                let jobIDs = outcomes.events.compactMap { $0.data?["job_id"]?.stringValue }
                #expect(Set(jobIDs).count == requests.count, "job ids repeat: \(jobIDs)")

                // The barrier in `outcomes` waited for the sentinel's reply too: a third reply published
                // before it is in `replies`.
                #expect(await h.replies.waitForCount(2, timeout: .seconds(5)))
                #expect(h.replies.events.count == 2)
                for reply in h.replies.events {
                    let original = h.events.events.first { $0.id == reply.id }
                    #expect(reply.id != nil && [requests[2].id, requests[4].id].contains(reply.subject ?? ""))
                    #expect(reply.json == original?.json)
                    #expect(reply.properties.messageID == original?.properties.messageID)
                    #expect(reply.properties.correlationID == original?.properties.correlationID)
                    #expect(reply.properties.headers?["traceparent"] == original?.properties.headers?["traceparent"])
                    #expect(reply.exchange == "" && reply.routingKey == h.replyQueue)
                }
                #expect(try await h.depth(of: h.jobsQueue) == 0)
                #expect(try await h.depth(of: h.deadQueue) == 0)
            }
        }

        /// One event loop is the default; with more, postbacks arrive on loops other than the one
        /// the requests are handled on, and each request still ends in one event.
        @Test func withMoreEventLoopsEveryRequestStillCompletesOnce() async throws {
            try await BridgeHarness.run("event-loops") { h in
                var settings = try h.settings()
                settings.extra["EVENT_LOOPS"] = "3"
                let bridge = try await h.startBridge(settings)
                let requests = (0..<60).map { TestRequest.thumbnails("loops-\($0)", index: $0) }
                let outcomes = try await h.outcomes(of: requests)
                outcomes.expectEachCompleted(requests)
                #expect(try await bridge.metrics().value("blitline_bridge_postbacks_total", ["outcome": "accepted"]) >= 60)
                #expect(try await h.depth(of: h.deadQueue) == 0)
                // SwiftNIO names the threads of a group of event loops `NIO-ELT-{group}-#{loop}`.
                let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(bridge.pid)/task").map {
                    (try? String(contentsOfFile: "/proc/\(bridge.pid)/task/\($0)/comm", encoding: .utf8)) ?? ""
                }
                #expect(threads.filter { $0.hasPrefix("NIO-ELT-") }.count == 3, "\(threads)")
            }
        }

        @Test func invalidRequestsFailAndAreDeadLetteredWithoutStoppingTheWork() async throws {
            try await BridgeHarness.run("invalid") { h in
                var settings = try h.settings()
                settings.applicationID = nil
                settings.extra["MAX_REQUEST_BYTES"] = "2048"
                let bridge = try await h.startBridge(settings)

                let job: JSONValue = [
                    "application_id": "test-app", "src": "https://example.com/a.jpg",
                    "functions": [
                        ["name": "resize_to_fit", "params": ["width": 10], "save": ["image_identifier": "t"]]
                    ],
                ]
                func variant(_ change: (inout JSONValue) -> Void) -> [UInt8] {
                    var copy = job
                    change(&copy)
                    return copy.jsonBytes
                }
                let cases: [(request: TestRequest, problem: String)] = [
                    (.raw("bad-bytes", [0xFF, 0xFE] + (0..<200).map { _ in UInt8.random(in: 0...255) }), "not valid"),
                    (.raw("bad-truncated", Array(job.jsonBytes.prefix(40))), "not valid JSON"),
                    (.raw("bad-array", JSONValue.array([job]).jsonBytes), "an array"),
                    (.raw("bad-no-src", variant { $0["src"] = nil }), "`src`"),
                    (.raw("bad-empty-functions", variant { $0["functions"] = [] }), "`functions`"),
                    (
                        .raw("bad-postback-url", variant { $0["postback_url"] = "https://example.com/mine" }),
                        "`postback_url`"
                    ),
                    (
                        .raw("bad-too-large", variant { $0["padding"] = .string(String(repeating: "x", count: 3000)) }),
                        "2048"
                    ),
                    (.raw("bad-no-application-id", variant { $0["application_id"] = nil }), "`application_id`"),
                ]
                var invalid = cases.map(\.request)
                for index in invalid.indices {
                    invalid[index].correlationID = "corr-\(index)"
                    invalid[index].headers = ["x-producer": .string("tests"), "x-attempt": .int32(Int32(index))]
                }
                let valid = (0..<invalid.count + 1).map {
                    TestRequest.thumbnails("good-\($0)", index: $0, applicationID: "test-app")
                }
                var interleaved: [TestRequest] = []
                for index in valid.indices {
                    interleaved.append(valid[index])
                    if index < invalid.count { interleaved.append(invalid[index]) }
                }
                let outcomes = try await h.outcomes(of: interleaved)
                for (index, (_, problem)) in cases.enumerated() {
                    let request = invalid[index]
                    guard let event = outcomes.single(request) else { continue }
                    expectFailedBeforeBlitline(
                        event, of: request, reason: "invalid_request", published: outcomes.published)
                    #expect(
                        event.errors.first?.contains(problem) == true,
                        "\(request.id): \(event.errors) does not say \(problem)")
                }
                outcomes.expectEachCompleted(valid)

                let deadLetters = try await h.deadLetters(count: invalid.count)
                #expect(deadLetters.count == invalid.count)
                for request in invalid {
                    // A request whose body was not held is dead-lettered by a quorum jobs queue itself.
                    let byTheQueue = request.id == "bad-too-large" && TestEnvironment.queueType == .quorum
                    expectDeadLettered(
                        deadLetters.first { $0.properties.messageID == request.id }, as: request,
                        reason: byTheQueue ? nil : "invalid_request")
                }
                #expect(bridge.isRunning)
                #expect(try await bridge.get("/readyz").status == 200)
                #expect(try await h.depth(of: h.jobsQueue) == 0)
            }
        }

        @Test func anUnknownFunctionFailsWithBlitlinesErrors() async throws {
            try await BridgeHarness.run("unknown-function") { h in
                // With the EVENT_SOURCE operators set when request ids overlap across deployments.
                var settings = try h.settings()
                settings.extra["EVENT_SOURCE"] = "/blitline-bridge/{vhost}/{JOBS_QUEUE}"
                try await h.startBridge(settings)
                let job: JSONValue = [
                    "src": ["name": "canvas", "width": 640, "height": 480],
                    "functions": [["name": "sparkle", "params": [:], "save": ["image_identifier": "sparkled"]]],
                ]
                let request = TestRequest(id: "sparkle-0", body: job.jsonBytes, correlationID: "c-1")
                let outcomes = try await h.outcomes(of: [request])
                guard let event = outcomes.single(request) else { return }
                let vhost = try AMQPConnection.Configuration(url: TestEnvironment.brokerURL).virtualHost
                expectEnvelope(
                    event, of: request, status: "failed", published: outcomes.published,
                    source: "/blitline-bridge/\(vhost == "/" ? "%2F" : vhost)/\(h.jobsQueue)")
                #expect(event.reason == "processing_failed")
                #expect(event.errors.contains { $0.contains("Unknown function named") }, "\(event.errors)")
                #expect(event.data?["failed_image_identifiers"] == ["sparkled"])
                #expect(event.data?["job_id"]?.stringValue?.isEmpty == false)
                #expect(event.data?["completed_via"]?.stringValue == "postback")
                #expect(try await h.depth(of: h.deadQueue) == 0, "a job Blitline ran is not dead-lettered")
            }
        }

        @Test func aJobBlitlineRefusesIsRejectedAndDeadLettered() async throws {
            try await BridgeHarness.run(
                "rejected", simulator: { $0.allowedApplicationIDs = [BridgeHarness.applicationID] }
            ) { h in
                try await h.startBridge()
                var refused = TestRequest.thumbnails("refused-0", applicationID: "someone-elses-app")
                refused.correlationID = "c-refused"
                refused.headers = ["x-producer": .string("tests")]
                let accepted = TestRequest.thumbnails("accepted-0", index: 1)
                let outcomes = try await h.outcomes(of: [refused, accepted])
                if let event = outcomes.single(refused) {
                    expectFailedBeforeBlitline(event, of: refused, reason: "rejected", published: outcomes.published)
                    #expect(event.errors.first?.contains("Application ID is not valid") == true, "\(event.errors)")
                }
                outcomes.expectEachCompleted([accepted])
                let deadLetters = try await h.deadLetters(count: 1)
                expectDeadLettered(deadLetters.first, as: refused, reason: "rejected")
                // Once both requests are settled, a dead letter of the accepted one would be in the queue.
                #expect(await h.waitUntilSettled(timeout: .seconds(10)), "\(h.diagnostics())")
                #expect(try await h.depth(of: h.deadQueue) == 0, "the accepted request was dead-lettered too")
            }
        }

        @Test func transientSubmitFailuresAreRetriedUntilTheRequestsComplete() async throws {
            try await BridgeHarness.run("submit-500") { h in
                let bridge = try await h.startBridge()
                try await h.simulator.control(["fail_submits": 2])
                let requests = (0..<4).map { TestRequest.thumbnails("retried-\($0)", index: $0) }
                try await h.outcomes(of: requests).expectEachCompleted(requests)
                let stats = try await h.simulator.stats()
                #expect(stats["submit_faults"] == 2)
                #expect(try await bridge.metrics().value("blitline_bridge_submit_retries_total") >= 1)
                #expect(try await h.depth(of: h.deadQueue) == 0)
            }
        }

        @Test func aSubmitThatHangsPastTheSubmitTimeoutIsRetried() async throws {
            try await BridgeHarness.run("submit-hang") { h in
                var settings = try h.settings()
                settings.extra["BLITLINE_SUBMIT_TIMEOUT"] = "1s"
                try await h.startBridge(settings)
                // Blitline would answer (503) only after 10 minutes, long after the test: the request
                // can complete only if the bridge gave up on the hung submit by itself and retried.
                try await h.simulator.control(["hang_submits": 1, "hang_ms": 600_000])
                let request = TestRequest.thumbnails("hung-0")
                let start = Date()
                try await h.outcomes(of: [request], timeout: .seconds(30)).expectEachCompleted([request])
                let took = Date().timeIntervalSince(start)
                #expect(took >= 1, "completed \(took) s after the request: the hung submit was cut before 1 s")
                let stats = try await h.simulator.stats()
                #expect(stats["submit_faults"] == 1)
                #expect(stats["jobs_accepted"] == 1 + h.sentinelsPublished)
            }
        }

        /// Blitline accepted the job but its answer was lost on the way (a gateway's 502): the
        /// request is retried, and comes back after the job's result is out, so it is not
        /// submitted again and nothing follows its `completed`.
        @Test func aSubmitWhoseAnswerWasLostIsNotSubmittedAgainOnceItsResultIsOut() async throws {
            try await BridgeHarness.run("submit-answer-lost") { h in
                var settings = try h.settings()
                settings.submitMaxAttempts = 2
                try await h.startBridge(settings)
                // Retry-After 5 s: the retry comes back well after the postback.
                try await h.simulator.control(["lose_submit_answers": 1, "fail_submit_status": 502, "retry_after_seconds": 5])
                let request = TestRequest.thumbnails("answer-lost-0")
                try await h.outcomes(of: [request]).expectEachCompleted([request])
                #expect(await h.waitUntilSettled(timeout: .seconds(20)), "\(h.diagnostics())")
                try await h.barrier()
                #expect(h.events.events(for: request.id).map(\.status) == ["completed"])
                let stats = try await h.simulator.stats()
                #expect(stats["submit_faults"] == 1)
                #expect(stats["jobs_accepted"] == 1 + h.sentinelsPublished, "the job was submitted again")
                #expect(try await h.depth(of: h.deadQueue) == 0)
            }
        }

        /// An events exchange or a queue declared by someone else with other arguments stops
        /// start-up with exit status 1 and a line naming it, not a reconnect loop that never ends.
        @Test(arguments: ["exchange", "queue"])
        func aTopologyDeclaredOtherwiseStopsStartUpNamingWhatDiffers(what: String) async throws {
            try await BridgeHarness.run("topology-\(what)") { h in
                let name = what == "exchange" ? h.eventsExchange : h.topology.deadlinesQueue
                let broker = try await TestEnvironment.connect()
                let channel = try await broker.openChannel()
                if what == "exchange" {
                    try await channel.deleteExchange(h.eventsExchange)
                    try await channel.declareExchange(h.eventsExchange, type: "direct", durable: true)
                } else {
                    try await channel.declareQueue(name, durable: true)
                }
                await broker.close()
                let bridge = try await h.startBridge(waitUntilReady: false)
                #expect(
                    await bridge.waitForExit(timeout: .seconds(20)) != nil,
                    "the bridge kept running\n\(bridge.logTail())")
                #expect(bridge.exitStatus == 1, "exit status \(String(describing: bridge.exitStatus))")
                #expect(
                    bridge.logLines.contains { $0.contains("cannot start") && $0.contains("\(what) \(name) already exists") },
                    "\(bridge.logTail())")
            }
        }

        /// The longest `JOB_TIMEOUT` the settings take (with `TIMEOUT_GRACE`, a message TTL of
        /// 2³² − 1 ms) is one the broker takes too: the bridge declares its queues and is ready.
        @Test func theLongestJobTimeoutTheSettingsTakeIsOneTheBrokerTakes() async throws {
            try await BridgeHarness.run("longest-timeout") { h in
                var settings = try h.settings()
                settings.jobTimeout = "4294966295ms"
                settings.timeoutGrace = "1s"
                try await h.startBridge(settings)
            }
        }

        /// SIGTERM while the bridge waits for a broker that does not answer (a node behind a
        /// network that drops everything): it stops waiting and exits 0 within `SHUTDOWN_TIMEOUT`,
        /// rather than after the connection attempt's own timeout.
        @Test func sigtermWhileConnectingToASilentBrokerExitsInTime() async throws {
            try await BridgeHarness.run("sigterm-connecting") { h in
                let silent = try Ports.silentListener()
                defer { close(silent.socket) }
                var settings = try h.settings()
                settings.brokerURL = "amqp://guest:guest@127.0.0.1:\(silent.port)/%2F?connection_timeout=30000"
                settings.shutdownTimeout = "5s"
                let bridge = try await h.startBridge(settings, waitUntilReady: false)
                await bridge.waitUntilListeningOrExited()
                #expect(bridge.isRunning, "\(bridge.logTail())")
                try await Task.sleep(for: .seconds(1))
                let signalled = ContinuousClock.now
                bridge.signal(SIGTERM)
                let exitedAfter = await bridge.waitForExit(timeout: .seconds(40)).map { _ in ContinuousClock.now - signalled }
                #expect(
                    exitedAfter.map { $0 <= .seconds(5) } == true,
                    "exit took \(String(describing: exitedAfter)) with SHUTDOWN_TIMEOUT=5s\n\(bridge.logTail())")
                #expect(bridge.exitStatus == 0, "exit status \(String(describing: bridge.exitStatus))")
            }
        }

        @Test func submitsThatKeepFailingEndAsSubmitFailedAfterTheLastAttempt() async throws {
            try await BridgeHarness.run("submit-failed") { h in
                var settings = try h.settings()
                settings.submitMaxAttempts = 2
                try await h.startBridge(settings)
                // Exactly as many failures as attempts: a third attempt would succeed and show.
                try await h.simulator.control(["fail_submits": 2])
                var request = TestRequest.thumbnails("doomed-0")
                request.correlationID = "c-doomed"
                let outcomes = try await h.outcomes(of: [request])
                if let event = outcomes.single(request) {
                    expectFailedBeforeBlitline(
                        event, of: request, reason: "submit_failed", published: outcomes.published)
                    #expect(event.errors.first?.contains("2 attempts") == true, "\(event.errors)")
                }
                expectDeadLettered(try await h.deadLetters(count: 1).first, as: request, reason: "submit_failed")
                #expect(
                    try await h.simulator.stats()["submit_requests"] == 2 + h.sentinelsPublished,
                    "Blitline is tried SUBMIT_MAX_ATTEMPTS times"
                )
            }
        }

        @Test func metricsCountWhatTheBridgeDid() async throws {
            try await BridgeHarness.run("metrics") { h in
                let bridge = try await h.startBridge()
                let valid = (0..<3).map { TestRequest.thumbnails("counted-\($0)", index: $0) }
                let invalid = TestRequest.raw("counted-invalid", Array("[]".utf8))
                _ = try await h.outcomes(of: valid + [invalid])
                let unsigned = try await bridge.post(
                    "/blitline/postback/garbage", body: valid[0].postbackBody(jobID: "0x"))
                #expect(unsigned.status == 401)

                // The barrier's sentinels are valid requests completed by postback, counted with the rest.
                let sentinels = Double(h.sentinelsPublished)
                var metrics = try await bridge.metrics()
                _ = try await eventually(timeout: .seconds(3)) {
                    metrics = try await bridge.metrics()
                    return metrics.value("blitline_bridge_events_published_total") >= 4 + sentinels
                        && metrics.value("blitline_bridge_postbacks_total", ["outcome": "accepted"]) >= 3 + sentinels
                        && metrics.value("blitline_bridge_postback_to_event_seconds_count") >= 3 + sentinels
                        && metrics.value("blitline_bridge_postbacks_total", ["outcome": "unsigned"]) >= 1
                        && metrics.value("blitline_bridge_requests_in_flight") == 0
                }
                #expect(metrics.value("blitline_bridge_requests_received_total") == 4 + sentinels)
                #expect(metrics.value("blitline_bridge_submissions_total", ["outcome": "accepted"]) == 3 + sentinels)
                #expect(metrics.value("blitline_bridge_submissions_total") == 3 + sentinels)
                #expect(metrics.value("blitline_bridge_postbacks_total", ["outcome": "accepted"]) == 3 + sentinels)
                #expect(metrics.value("blitline_bridge_postbacks_total", ["outcome": "unsigned"]) == 1)
                #expect(metrics.value("blitline_bridge_events_published_total", ["type": "completed"]) == 3 + sentinels)
                #expect(
                    metrics.value(
                        "blitline_bridge_events_published_total", ["type": "failed", "reason": "invalid_request"]) == 1)
                #expect(metrics.value("blitline_bridge_submit_duration_seconds_count") == 3 + sentinels)
                #expect(metrics.value("blitline_bridge_postback_to_event_seconds_count") == 3 + sentinels)
                #expect(metrics.value("blitline_bridge_requests_in_flight") == 0)
            }
        }
    }
}
