import Blitline
import BlitlineSimulator
import Hummingbird
import Testing

@Suite("Simulator postbacks")
struct PostbackTests {
    @Test("a JSON postback carries results and postback_headers, and decodes")
    func jsonPostback() async throws {
        let receiver = PostbackReceiver()
        try await receiver.serve { url in
            try await withSimulator { client, port in
                let outcome = await client.submit(job(#","postback_url":"\#(url)","postback_headers":{"X-Token":"s3cret"}"#))
                guard case .accepted(let jobID, _) = outcome else {
                    Issue.record("not accepted: \(outcome)")
                    return
                }
                try await receiver.waitFor(1)
                let received = try #require(receiver.requests.first)
                #expect(received.contentType == "application/json")
                #expect(received.headers["x-token"] == "s3cret")
                let result = try JobResult.decode(postbackBody: received.body, contentType: received.contentType)
                #expect(result.jobID == jobID && result.isCompleted && result.images.first?.width == 100)
                let counters = await statsOnceSettled(port, ["postbacks_acknowledged": 1])
                #expect(counters?["postbacks_acknowledged"] == .number(1))
            }
        }
    }

    @Test("v 1.17 postbacks use the legacy form field results=")
    func legacyPostback() async throws {
        let receiver = PostbackReceiver()
        try await receiver.serve { url in
            try await withSimulator { client, _ in
                let legacy = BlitlineJob(
                    json: try JSONValue(parsing: #"{"application_id":"a","src":"https://e.com/x.jpg","v":1.17,"postback_url":"\#(url)","functions":[{"name":"crop_to_square","save":{"image_identifier":"sq"}}]}"#)
                )!
                guard case .accepted(let jobID, _) = await client.submit(legacy) else {
                    Issue.record("not accepted")
                    return
                }
                try await receiver.waitFor(1)
                let received = try #require(receiver.requests.first)
                #expect(received.contentType == "application/x-www-form-urlencoded")
                #expect(received.body.starts(with: Array("results=".utf8)))
                let result = try JobResult.decode(postbackBody: received.body, contentType: received.contentType)
                #expect(result.jobID == jobID)
                let image = try #require(result.images.first)
                #expect(image.width == image.height)
            }
        }
    }

    @Test("failed deliveries are retried at 1 s, 3 s, 15 s times the speed factor; any 2xx ends it")
    func retrySchedule() async throws {
        let receiver = PostbackReceiver(statuses: [.internalServerError, .serviceUnavailable, .notFound, .accepted])
        try await receiver.serve { url in
            try await withSimulator { $0.retrySpeedFactor = 0.05 } _: { client, port in
                _ = await client.submit(job(#","postback_url":"\#(url)","retry_postback":true"#))
                try await receiver.waitFor(4)
                try await Task.sleep(for: .milliseconds(200))
                let times = receiver.requests.map(\.at)
                try #require(times.count == 4)
                let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
                for (gap, expected) in zip(gaps, [Duration.milliseconds(50), .milliseconds(150), .milliseconds(750)]) {
                    #expect(gap >= expected * 0.9, "gap \(gap), expected \(expected)")
                }
                // Scaled, the three take 0.95 s; unscaled (1 s, 3 s, 15 s) they would take 19 s. A
                // busy machine delays a retry by a second or more (CI saw 622 ms, then over 1 s for
                // the first), so the bound is on the whole schedule, not on each gap.
                let total = gaps.reduce(Duration.zero, +)
                #expect(total < .seconds(10), "the retries took \(total): \(gaps)")
                let counters = await statsOnceSettled(port, ["postbacks_sent": 4, "postbacks_acknowledged": 1])
                #expect(counters?["postbacks_sent"] == .number(4))
                #expect(counters?["postbacks_acknowledged"] == .number(1))
            }
        }
    }

    @Test("postbacks past --postback-connections wait their turn, and the timeout runs from each one's sending")
    func postbacksWaitTheirTurn() async throws {
        // Two at a time, 1 s each: the last four are sent 3 s and 4 s after the first, past the
        // 3.5 s timeout, which postbacks waiting in the HTTP client's own queue would count. Each
        // one's own second leaves 2.5 s for a machine busy with the rest of the suite.
        let receiver = PostbackReceiver(answerDelay: .seconds(1))
        try await receiver.serve { url in
            try await withSimulator {
                $0.postbackConnections = 2
                $0.postbackTimeout = .milliseconds(3_500)
            } _: { client, port in
                for _ in 0..<10 { _ = await client.submit(job(#","postback_url":"\#(url)""#)) }
                try await receiver.waitFor(10, timeout: .seconds(20))
                let counters = await statsOnceSettled(port, ["postbacks_acknowledged": 10])
                #expect(counters?["postbacks_acknowledged"] == .number(10))
                #expect(counters?["postbacks_failed_attempts"] == .number(0))
                #expect(receiver.mostInHand == 2)
            }
        }
    }

    @Test("without retry_postback a failed postback is sent once")
    func noRetry() async throws {
        let receiver = PostbackReceiver(statuses: [.internalServerError, .internalServerError])
        try await receiver.serve { url in
            try await withSimulator { $0.retrySpeedFactor = 0.01 } _: { client, port in
                _ = await client.submit(job(#","postback_url":"\#(url)""#))
                try await receiver.waitFor(1)
                try await Task.sleep(for: .milliseconds(300))
                #expect(receiver.requests.count == 1)
                #expect(await statsOnceSettled(port, ["postbacks_given_up": 1])?["postbacks_given_up"] == .number(1))
            }
        }
    }

    @Test("hold_postbacks keeps every postback in until it is cleared, then they all go")
    func holdAndRelease() async throws {
        let receiver = PostbackReceiver()
        try await receiver.serve { url in
            try await withSimulator { client, port in
                try await control(port, #"{"hold_postbacks":true}"#)
                for _ in 0..<3 { _ = await client.submit(job(#","postback_url":"\#(url)""#)) }
                #expect(await statsOnceSettled(port, ["jobs_completed": 3]) != nil)
                try await Task.sleep(for: .milliseconds(300))
                #expect(receiver.requests.isEmpty, "a postback went out while held")
                try await control(port, #"{"hold_postbacks":false}"#)
                try await receiver.waitFor(3)
                #expect(receiver.requests.count == 3)
            }
        }
    }

    @Test("injected faults: a dropped postback never arrives, a duplicated one arrives twice")
    func dropAndDuplicate() async throws {
        let receiver = PostbackReceiver()
        try await receiver.serve { url in
            try await withSimulator { client, port in
                try await control(port, #"{"drop_postbacks":1,"duplicate_postbacks":1}"#)
                _ = await client.submit(job(#","postback_url":"\#(url)""#))
                _ = await client.submit(job(#","postback_url":"\#(url)""#))
                try await receiver.waitFor(2)
                try await Task.sleep(for: .milliseconds(200))
                let ids = try receiver.requests.map { try JobResult.decode(postbackBody: $0.body, contentType: $0.contentType).jobID }
                #expect(ids.count == 2 && Set(ids).count == 1)
                #expect(await statsOnceSettled(port, ["postbacks_dropped": 1])?["postbacks_dropped"] == .number(1))
            }
        }
    }
}
