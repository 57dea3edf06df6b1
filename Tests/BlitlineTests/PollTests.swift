import Blitline
import BlitlineSimulator
import Testing

@Suite("BlitlineClient.poll against the simulator")
struct PollTests {
    @Test("a long poll is held open until the job ends, then returns its result")
    func longPoll() async throws {
        try await withSimulator { $0.processingDelay = .milliseconds(300) } _: { client, port in
            // The job's 300 ms start when the simulator accepts it, after this clock starts: the
            // poll cannot answer sooner. (Started after the submit, a slow submit answer left less.)
            let started = ContinuousClock.now
            guard case .accepted(let jobID, _) = await client.submit(job()) else {
                Issue.record("not accepted")
                return
            }
            let outcome = await client.poll(jobID: jobID)
            #expect(ContinuousClock.now - started >= .milliseconds(300))
            #expect(try await stats(port)["polls"] == .number(1), "one poll, held open until the result")
            guard case .result(let result) = outcome else {
                Issue.record("expected a result, got \(outcome)")
                return
            }
            #expect(result.jobID == jobID && result.isCompleted)
            let original = try #require(result.original)
            #expect(result.images.first?.width == 100)
            #expect(result.images.first?.height == Int((Double(original.height) * 100 / Double(original.width)).rounded()))
        }
    }

    @Test("an answer that stops after its head ends as pending at the poll timeout", .timeLimit(.minutes(1)))
    func stalledAnswer() async throws {
        try await withStalledAnswers { $0.pollTimeout = .milliseconds(500) } _: { client in
            let started = ContinuousClock.now
            let outcome = await client.poll(jobID: "stalled")
            let elapsed = ContinuousClock.now - started
            guard case .pending = outcome else {
                Issue.record("expected pending, got \(outcome)")
                return
            }
            #expect(elapsed >= .milliseconds(450) && elapsed < .seconds(30))
        }
    }

    @Test("legacy jobs (v 1.17) publish results as JSON text, decoded twice; failures carry Blitline's message")
    func legacyPoll() async throws {
        try await withSimulator { client, _ in
            let legacy = BlitlineJob(
                json: try JSONValue(parsing: #"{"application_id":"a","src":"https://e.com/x.jpg","v":1.17,"functions":[{"name":"blu3r","save":{"image_identifier":"t"}}]}"#)
            )!
            guard case .accepted(let jobID, _) = await client.submit(legacy) else {
                Issue.record("not accepted")
                return
            }
            guard case .result(let result) = await client.poll(jobID: jobID) else {
                Issue.record("no result")
                return
            }
            #expect(result.errors == ["Image processing failed. Unknown function named 'blu3r'"])
            #expect(result.failedImageIdentifiers == ["t"])
            #expect(!result.isCompleted)
        }
    }

    @Test("the server's wait limit gives pending; polling faster than the rate gives 429 with Retry-After")
    func pendingAndRateLimited() async throws {
        try await withSimulator {
            $0.pollWait = .milliseconds(200)
            $0.pollRate = 0.2  // one poll per 5 s, so a slow first answer cannot make room for the second
        } _: { client, _ in
            let first = await client.poll(jobID: "unknownjob")
            #expect(first == .pending)
            let second = await client.poll(jobID: "unknownjob")
            guard case .failed(let failure) = second else {
                Issue.record("expected failed, got \(second)")
                return
            }
            #expect(failure.kind == .rateLimited && failure.retryAfter == .seconds(1))
        }
    }
}
