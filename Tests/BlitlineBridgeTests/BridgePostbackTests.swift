import AMQP
import Blitline
import Foundation
import Testing
import TestSupport

extension BridgeProcessTests {
    /// The postback listener of a running bridge (README, "HTTP listener"): signed tokens, what it
    /// refuses, repeats, the legacy form encoding, secret rotation, deadlines and late results.
    @Suite struct BridgePostbackTests {
        static let otherSecret = "another-secret-nobody-configured-0123456789"

        @Test func theListenerRefusesWhatIsNotAGenuineResult() async throws {
            try await BridgeHarness.run("postback-refusals") { h in
                let bridge = try await h.startBridge()
                let result = TestRequest.thumbnails("forged-0").postbackBody(jobID: "0forgedjobidforgedjobi")
                let route = "/blitline/postback/"

                #expect(try await bridge.post(route + "garbage", body: result).status == 401)
                #expect(try await bridge.post(route + "bm90IGEgdG9rZW4.c2lnbmF0dXJl", body: result).status == 401)
                let foreign = h.postbackToken(for: "forged-1", signedWith: Self.otherSecret)
                #expect(try await bridge.post(route + foreign, body: result).status == 403)
                var tampered = Array(h.postbackToken(for: "forged-2").utf8)
                tampered[2] = tampered[2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
                #expect(
                    [401, 403].contains(
                        try await bridge.post(route + String(decoding: tampered, as: UTF8.self), body: result).status))

                let genuine = h.postbackToken(for: "not-a-result")
                #expect(try await bridge.post(route + genuine, body: Array(#"{"hello":"world"}"#.utf8)).status == 400)
                #expect(
                    try await bridge.post(route + genuine, body: Array(#"{"results":{"images":[]}}"#.utf8)).status
                        == 400)
                #expect(try await bridge.post(route + genuine, body: [], contentType: nil).status == 400)
                #expect(try await bridge.postOversized(route + genuine, size: 9 << 20).status == 413)

                #expect(try await bridge.post("/blitline/elsewhere/" + genuine, body: result).status == 404)
                #expect(
                    try await bridge.post("/postback/" + genuine, body: result).status == 404,
                    "postbacks live under the base URL's path")
                #expect(try await bridge.get("/nowhere").status == 404)

                // Every refusal above was answered before the sentinel was published.
                try await h.barrier()
                #expect(h.events.events.isEmpty, "a refused postback published \(h.events.events.compactMap(\.id))")
                #expect(bridge.isRunning)
            }
        }

        @Test func aRepeatedPostbackGivesTheSameEventIDAndNothingElse() async throws {
            try await BridgeHarness.run("postback-repeated") { h in
                try await h.startBridge()
                try await h.simulator.control(["duplicate_postbacks": 1])
                let request = TestRequest.thumbnails("repeated-0")
                let start = Date()
                try await h.publish(request)

                #expect(await h.events.waitForCount(2, timeout: .seconds(20)), "\(h.diagnostics())")
                // Both deliveries answered 200, so both events were confirmed before the sentinel
                // was published; anything else they made the bridge publish, too.
                let bothAnswered = await eventually(timeout: .seconds(20)) {
                    (try? await h.simulator.stats()["postbacks_acknowledged"]) == 2
                }
                #expect(bothAnswered, "the simulator's two postbacks were not both answered 2xx\n\(h.diagnostics())")
                let stats = try await h.simulator.stats()
                #expect(stats["postbacks_duplicated"] == 1)
                #expect(stats["postbacks_failed_attempts"] == 0, "a postback was retried")
                try await h.barrier()
                let events = h.events.events
                #expect(events.count == 2)
                #expect(events.allSatisfy { $0.id == "repeated-0/completed" }, "\(events.compactMap(\.id))")
                for event in events { expectCompleted(event, of: request, published: window(since: start)) }
            }
        }

        @Test func aLegacyFormEncodedPostbackCompletes() async throws {
            try await BridgeHarness.run("postback-legacy") { h in
                try await h.startBridge()
                // Blitline posts back `v` 1.17 jobs as the form field `results`.
                let request = TestRequest.thumbnails("legacy-0", version: "1.17")
                try await h.outcomes(of: [request]).expectEachCompleted([request])
                // Answered 2xx the first time, like the sentinel's (which the simulator may count a moment after its event).
                let acknowledged = await eventually(timeout: .seconds(5)) {
                    (try? await h.simulator.stats()["postbacks_acknowledged"]) == 1 + h.sentinelsPublished
                }
                let stats = try await h.simulator.stats()
                #expect(acknowledged, "\(stats.json.jsonString)")
            }
        }

        @Test func aPostbackSignedWithARotatedOutSecretIsStillAccepted() async throws {
            try await BridgeHarness.run("postback-rotation") { h in
                var settings = try h.settings()
                let newSecret = "the-new-secret-after-rotation-0123456789"
                settings.secrets = [newSecret, h.secret]
                let bridge = try await h.startBridge(settings)
                let start = Date()

                let request = TestRequest.thumbnails("rotated-0")
                try await h.publish(request)
                let signedBefore = TestRequest.thumbnails("signed-before-rotation", index: 1)
                let answer = try await bridge.post(
                    "/blitline/postback/" + h.postbackToken(for: signedBefore.id, signedWith: h.secret),
                    body: signedBefore.postbackBody(jobID: "1signedbeforerotation0"))
                #expect(answer.status == 200, "\(answer.text)")
                let forged = try await bridge.post(
                    "/blitline/postback/" + h.postbackToken(for: "forged-0", signedWith: Self.otherSecret),
                    body: signedBefore.postbackBody(jobID: "1forged"))
                #expect(forged.status == 403)

                #expect(
                    await h.events.waitForEvents(for: [request.id, signedBefore.id], timeout: .seconds(20)),
                    "\(h.diagnostics())")
                let published = window(since: start)
                if let event = h.events.events(for: request.id).first {
                    expectCompleted(event, of: request, published: published)
                }
                if let event = h.events.events(for: signedBefore.id).first {
                    expectCompleted(event, of: signedBefore, published: published)
                }
                // The forged postback was answered before the sentinel was published.
                try await h.barrier()
                #expect(h.events.events(for: "forged-0").isEmpty)
            }
        }

        @Test func aDroppedPostbackEndsInTimeoutAndALateResultIsFlaggedLate() async throws {
            try await BridgeHarness.run("postback-timeout") { h in
                var settings = try h.settings()
                settings.jobTimeout = "3s"
                let bridge = try await h.startBridge(settings)
                try await h.simulator.control(["drop_postbacks": 1])
                var request = TestRequest.thumbnails("dropped-0")
                request.correlationID = "c-dropped"
                let start = Date()
                try await h.publish(request)

                #expect(
                    await h.events.waitForEvents(for: [request.id], endingWith: ["failed"], timeout: .seconds(20)),
                    "\(h.diagnostics())")
                let timeout = try #require(h.events.events(for: request.id).first)
                expectEnvelope(timeout, of: request, status: "failed", published: window(since: start))
                #expect(timeout.reason == "timeout")
                #expect(!timeout.errors.isEmpty)
                #expect(timeout.data?["completed_via"] == .null)
                let jobID = try #require(timeout.data?["job_id"]?.stringValue, "a timed-out job still has its job id")
                let waited =
                    parseEventTime(timeout.json?["time"]?.stringValue ?? "").map { $0.timeIntervalSince(start) } ?? 0
                #expect(waited >= 2.9, "the timeout came \(waited) s after the request, before JOB_TIMEOUT")
                #expect(try await h.simulator.stats()["postbacks_dropped"] == 1)

                // Blitline's result comes late, and (as postbacks may) twice, to the URL the job
                // was submitted with.
                let token = h.postbackToken(
                    for: request.id, correlationID: request.correlationID, submittedAt: start, jobTimeout: .seconds(3))
                for _ in 1...2 {
                    let late = try await bridge.post(
                        "/blitline/postback/" + token, body: request.postbackBody(jobID: jobID))
                    #expect(late.status == 200, "\(late.text)")
                }
                // Both late results were answered 200 above, so their events were confirmed before the
                // sentinel was published.
                try await h.barrier()
                let events = h.events.events(for: request.id)
                #expect(
                    events.map(\.id) == ["dropped-0/failed", "dropped-0/late", "dropped-0/late"],
                    "a repeated late result changed its id")
                guard events.count > 1 else { return }
                let lateEvent = events[1]
                expectEnvelope(
                    lateEvent, of: request, status: "completed", id: "dropped-0/late", published: window(since: start))
                #expect(lateEvent.data?["late"] == true)
                #expect(lateEvent.data?["job_id"]?.stringValue == jobID)
                #expect(lateEvent.data?["completed_via"]?.stringValue == "postback")
            }
        }

        /// Jobs submitted together share deadline messages: exactly the ones whose postback never
        /// came time out, each once; the others complete and never time out.
        @Test func jobsSubmittedTogetherTimeOutOnlyWhereNoResultCame() async throws {
            try await BridgeHarness.run("postback-timeouts") { h in
                var settings = try h.settings()
                settings.jobTimeout = "3s"
                _ = try await h.startBridge(settings)
                try await h.simulator.control(["drop_postbacks": 4])
                let requests = (0..<12).map { TestRequest.thumbnails("together-\($0)") }
                try await withThrowingDiscardingTaskGroup { group in
                    for request in requests { group.addTask { try await h.publish(request) } }
                }

                #expect(await h.events.waitForCount(12, timeout: .seconds(30)), "\(h.diagnostics())")
                // A wrong extra timeout would come from a deadline message that expires later than
                // the four that timed out. Once no request and no deadline is held any more, every
                // deadline was handled and its events confirmed before the sentinel's.
                #expect(
                    await h.waitUntilSettled(deadlines: true, timeout: .seconds(20)),
                    "deadlines still held\n\(h.diagnostics())")
                try await h.barrier()
                let events = requests.map { h.events.events(for: $0.id) }
                #expect(events.allSatisfy { $0.count == 1 }, "not one event per request: \(events.map { $0.map(\.id) })")
                let timedOut = events.filter { $0.first?.reason == "timeout" }
                #expect(timedOut.count == 4)
                #expect(events.filter { $0.first?.status == "completed" }.count == 8)
                #expect(try await h.simulator.stats()["postbacks_dropped"] == 4)
            }
        }

        /// A deadline message is the bridge's own, but a broken one (or a broken part of one) must
        /// neither stop the deadlines behind it nor lose the readable jobs beside it.
        @Test func unreadableDeadlinePartsAreDroppedAndTheReadableJobsStillTimeOut() async throws {
            try await BridgeHarness.run("deadline-garbage") { h in
                let bridge = try await h.startBridge()
                let now = JSONValue.number(String(Int64(Date().timeIntervalSince1970 * 1000)))
                let job: JSONValue = [
                    "request_id": "orphan-0", "job_id": "0orphanjobidorphanjobi", "submitted_at": now,
                    "deadline": now, "application_key": "",
                ]
                try await h.publishRaw(Array("not json".utf8), to: h.jobsQueue + ".timeouts")
                try await h.publishRaw(
                    JSONValue.array([["request_id": .number("7")], job, "x"]).jsonBytes, to: h.jobsQueue + ".timeouts")

                #expect(
                    await h.events.waitForEvents(for: ["orphan-0"], endingWith: ["failed"], timeout: .seconds(20)),
                    "\(h.diagnostics())")
                #expect(h.events.events(for: "orphan-0").map(\.reason) == ["timeout"])
                #expect(await eventually(timeout: .seconds(10)) { (try? await h.depth(of: h.jobsQueue + ".timeouts")) == 0 })
                #expect(bridge.isRunning)
                #expect(bridge.logLines.contains { $0.contains("unreadable parts of a deadline message") })
            }
        }
    }
}
