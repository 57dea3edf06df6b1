import AMQP
import Blitline
import Foundation
import Testing
import TestSupport

/// The bridge under real failures (README, "Delivery guarantees"): killed, its broker restarted, stopped
/// with jobs in flight, fed garbage. Every request must end with its event, and no request may
/// get events under two different ids. deploy/test.sh runs `…FaultTests` one at a time.
@Suite(.serialized) struct BridgeFaultTests {
    /// Each request's events all carry the same id, `{request_id}/completed`.
    ///
    /// First waits until the broker holds no request (`waitUntilSettled`), then passes a barrier:
    /// every request's handling is then over, so an event it published under another id is in
    /// `events`. Not covered: deadlines (60 s, past the test) and repeats under the same id (a
    /// postback the simulator retries after a bridge died), which are allowed.
    func expectOneOutcomeEach(
        _ requests: [TestRequest], _ h: BridgeHarness, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        #expect(
            await h.waitUntilSettled(timeout: .seconds(30)),
            "requests still held by the broker\n\(h.diagnostics())", sourceLocation: sourceLocation)
        try await h.barrier(sourceLocation: sourceLocation)
        let ids = h.events.idsByRequest
        for request in requests {
            #expect(
                ids[request.id] == ["\(request.id)/completed"], "\(request.id): \(ids[request.id] ?? [])",
                sourceLocation: sourceLocation)
        }
        let strangers = Set(ids.keys).subtracting(requests.map(\.id))
        #expect(strangers.isEmpty, "events for requests never made: \(strangers)", sourceLocation: sourceLocation)
    }

    @Test func killMinusNineMidFlightThenRestartLosesNothing() async throws {
        // Postback retries at half Blitline's schedule (0.5 s, 1.5 s, 7.5 s) outlast the restart.
        try await BridgeHarness.run("kill-9", retrySpeedFactor: 0.5) { h in
            var settings = try h.settings()
            settings.extra["PREFETCH"] = "8"
            let bridge = try await h.startBridge(settings)
            try await h.simulator.control(["postback_delay_ms": 300, "submit_latency_ms": 800])
            let requests = (0..<40).map { TestRequest.thumbnails("killed-\($0)", index: $0) }
            try await h.publish(Array(requests.prefix(10)))
            #expect(await h.events.waitForCount(5, timeout: .seconds(30)), "\(h.diagnostics())")
            // The rest arrive and are being submitted (or wait behind the prefetch) when it dies:
            // by its metrics, it has taken one of them at least and has requests in hand.
            try await h.publish(Array(requests.dropFirst(10)))
            #expect(
                await eventually(timeout: .seconds(20)) {
                    guard let metrics = try? await bridge.metrics() else { return false }
                    return metrics.value("blitline_bridge_requests_received_total") > 10
                        && metrics.value("blitline_bridge_requests_in_flight") > 0
                }, "the bridge took none of the second lot, or had nothing in hand\n\(h.diagnostics())")
            bridge.signal(SIGKILL)
            #expect(await bridge.waitForExit(timeout: .seconds(5)) != nil)
            #expect(bridge.exitStatus == nil, "the bridge was not killed by the signal")
            let unfinished = try await h.depth(of: h.jobsQueue)
            #expect(unfinished > 0, "no request was in hand or queued when the bridge died")

            try await h.restart(bridge)
            #expect(
                await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(60)),
                "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
            try await expectOneOutcomeEach(requests, h)
        }
    }

    @Test func aBrokerRestartMidFlightLosesNothing() async throws {
        // Postback retries on Blitline's own schedule (1 s, 3 s, 15 s) outlast the broker's absence.
        try await BridgeHarness.run("broker-restart", retrySpeedFactor: 1) { h in
            let bridge = try await h.startBridge()
            try await h.simulator.control(["postback_delay_ms": 1500])
            let requests = (0..<30).map { TestRequest.thumbnails("restarted-\($0)", index: $0) }
            try await h.publish(requests)
            #expect(
                await eventually(timeout: .seconds(10)) { (try? await h.simulator.stats()["jobs_accepted"]) ?? 0 >= 5 })

            try await TestEnvironment.controlBroker("ctl", "stop_app")
            let notReady = await eventually(timeout: .seconds(10)) { (try? await bridge.get("/readyz").status) == 503 }
            try await Task.sleep(for: .seconds(2))
            let stillNotReady = (try? await bridge.get("/readyz").status) == 503
            try await TestEnvironment.controlBroker("ctl", "start_app")
            #expect(notReady && stillNotReady, "/readyz did not answer 503 while the broker was away")
            #expect(bridge.isRunning)

            let readyAgain = await eventually(timeout: .seconds(40)) {
                (try? await bridge.get("/readyz").status) == 200
            }
            #expect(readyAgain, "/readyz never answered 200 after the broker came back\n\(h.diagnostics())")
            #expect(
                await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(60)),
                "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
            try await expectOneOutcomeEach(requests, h)
        }
    }

    @Test func sigtermWithJobsInFlightDrainsAndExitsZeroInTime() async throws {
        try await BridgeHarness.run("sigterm", retrySpeedFactor: 1) { h in
            var settings = try h.settings()
            settings.shutdownTimeout = "5s"
            let bridge = try await h.startBridge(settings)
            // Each submission takes 2 s, so requests are in hand when the signal comes.
            try await h.simulator.control(["submit_latency_ms": 2000])
            let requests = (0..<10).map { TestRequest.thumbnails("drained-\($0)", index: $0) }
            try await h.publish(requests)
            #expect(
                await eventually(timeout: .seconds(10)) {
                    (try? await h.simulator.stats()["submit_requests"]) ?? 0 >= 1
                })

            bridge.signal(SIGTERM)
            let signalled = ContinuousClock.now
            // The drain has begun once the service group says so (its debug line, which the tests' bridges log).
            let drainBegun = await eventually(timeout: .seconds(5)) {
                bridge.logLines.contains { $0.contains("Triggering graceful shutdown for service") && $0.contains("BridgeService") }
            }
            #expect(drainBegun, "the bridge never began its drain\n\(bridge.logTail())")
            let lateArrival = TestRequest.thumbnails("postback-while-draining", index: 3)
            let answer = try await bridge.post(
                "/blitline/postback/" + h.postbackToken(for: lateArrival.id),
                body: lateArrival.postbackBody(jobID: "2postbackwhiledraining"))
            let answeredWhileDraining = bridge.isRunning
            #expect(answer.status == 200, "a postback during the drain got \(answer.status) \(answer.text)")
            #expect(answeredWhileDraining, "the bridge was gone before the postback; the drain was not exercised")

            let exitedAfter = await bridge.waitForExit(timeout: .seconds(10)).map { _ in ContinuousClock.now - signalled
            }
            #expect(
                exitedAfter.map { $0 <= .seconds(6) } == true,
                "exit took \(String(describing: exitedAfter)) with SHUTDOWN_TIMEOUT=5s")
            #expect(bridge.exitStatus == 0, "exit status \(String(describing: bridge.exitStatus))\n\(bridge.logTail())")
            #expect(await h.events.waitForEvents(for: [lateArrival.id], timeout: .seconds(5)))

            try await h.simulator.control(["submit_latency_ms": 0])
            try await h.restart(bridge)
            #expect(
                await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(60)),
                "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
            try await expectOneOutcomeEach(requests + [lateArrival], h)
        }
    }

    @Test func malformedPostbacksNeverCrashTheBridgeNorLoseARequestBehindThem() async throws {
        try await BridgeHarness.run("malformed-postbacks") { h in
            let bridge = try await h.startBridge()
            try await h.simulator.control(["postback_delay_ms": 500])
            let before = (0..<5).map { TestRequest.thumbnails("before-\($0)", index: $0) }
            try await h.publish(before)

            let token = h.postbackToken(for: "malformed-target")
            let real = TestRequest.thumbnails("malformed-target").postbackBody(jobID: "3malformedtargetjobid0")
            func random(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255) } }
            let bodies: [(name: String, body: [UInt8], contentType: String?, status: Int)] = [
                ("random bytes as JSON", random(4096), "application/json", 400),
                ("random bytes as a form", random(4096), "application/x-www-form-urlencoded", 400),
                ("random bytes untyped", random(4096), nil, 400),
                ("truncated JSON", Array(real.prefix(real.count / 2)), "application/json", 400),
                (
                    "results as text that is not JSON", Array(#"{"results":"{\"job_id\":"}"#.utf8), "application/json",
                    400
                ),
                ("results an array of numbers", Array(#"{"results":[1,2,3]}"#.utf8), "application/json", 400),
                ("deep nesting", Array(String(repeating: "[", count: 100_000).utf8), "application/json", 400),
                (
                    "a huge string", Array(#"{"results":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: 7 << 20),
                    "application/json", 400
                ),
                ("JSON sent as a form", real, "application/x-www-form-urlencoded", 400),
                (
                    "a form with broken JSON", Array("results=%7B%22job_id%22%3A".utf8),
                    "application/x-www-form-urlencoded", 400
                ),
                ("empty", [], "application/json", 400),
            ]
            for (name, body, contentType, status) in bodies {
                let answer = try await bridge.post("/blitline/postback/" + token, body: body, contentType: contentType)
                #expect(answer.status == status, "\(name): \(answer.status) \(answer.text)")
            }
            #expect(try await bridge.postOversized("/blitline/postback/" + token, size: 64 << 20).status == 413)
            // The same, all at once, and with tokens that are garbage themselves.
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<40 {
                    group.addTask {
                        let garbageToken = index.isMultiple(of: 2) ? token : PostbackTokenGarbage.make()
                        return try await bridge.post(
                            "/blitline/postback/" + garbageToken, body: random(1024 * (index + 1))
                        ).status
                    }
                }
                for try await status in group { #expect([400, 401, 403].contains(status), "got \(status)") }
            }
            #expect(bridge.isRunning)
            #expect(try await bridge.get("/healthz").status == 200)

            let after = (0..<5).map { TestRequest.thumbnails("after-\($0)", index: $0) }
            try await h.publish(after)
            let all = before + after
            #expect(
                await h.events.waitForEvents(for: all.map(\.id), timeout: .seconds(30)),
                "no event for \(h.events.missing(all.map(\.id)))\n\(h.diagnostics())")
            try await expectOneOutcomeEach(all, h)
        }
    }

    @Test func hugeAndMalformedRequestsNeverStopTheRequestsBehindThem() async throws {
        try await BridgeHarness.run("malformed-requests") { h in
            let bridge = try await h.startBridge()
            var requests: [TestRequest] = []
            for index in 0..<6 {
                requests.append(.raw("garbage-\(index)", (0..<(512 << index)).map { _ in UInt8.random(in: 0...255) }))
                requests.append(.thumbnails("valid-\(index)", index: index))
            }
            requests.append(
                .raw(
                    "huge",
                    Array(#"{"src":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: 5 << 20)
                        + Array(#"","functions":[]}"#.utf8)))
            requests.append(.raw("deep", Array(String(repeating: #"{"a":"#, count: 50_000).utf8)))
            requests.append(.thumbnails("valid-last", index: 7))
            try await h.publish(requests)

            #expect(
                await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(30)),
                "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
            for request in requests {
                let expected = request.id.hasPrefix("valid") ? "completed" : "failed"
                let ids = h.events.idsByRequest[request.id] ?? []
                #expect(ids == ["\(request.id)/\(expected)"], "\(request.id): \(ids)")
                if expected == "failed" { #expect(h.events.events(for: request.id).first?.reason == "invalid_request") }
            }
            #expect(bridge.isRunning)
            #expect(try await h.deadLetters(count: 8).count == 8)
        }
    }
}

/// Tokens that are not tokens: random URL-safe text, with and without a dot.
enum PostbackTokenGarbage {
    static func make() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
        return String((0..<Int.random(in: 1...300)).map { _ in alphabet.randomElement()! })
    }
}
