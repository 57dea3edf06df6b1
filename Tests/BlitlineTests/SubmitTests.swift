import AsyncHTTPClient
import Blitline
import BlitlineSimulator
import Testing

@Suite("BlitlineClient.submit against the simulator")
struct SubmitTests {
    @Test("an accepted job has a 22-character URL-safe id and its announced images")
    func accepted() async throws {
        try await withSimulator { client, _ in
            let outcome = await client.submit(job())
            guard case .accepted(let jobID, let images) = outcome else {
                Issue.record("expected accepted, got \(outcome)")
                return
            }
            #expect(jobID.count == 22)
            #expect(jobID.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
            #expect(images.map(\.imageIdentifier) == ["thumb"])
            #expect(images.first?.url?.hasPrefix("https://s3.amazonaws.com/blitline/") == true)
        }
    }

    @Test("Blitline's error is a final rejection carrying its text")
    func rejected() async throws {
        try await withSimulator { $0.allowedApplicationIDs = ["other"] } _: { client, _ in
            let outcome = await client.submit(job())
            guard case .rejected(let message) = outcome else {
                Issue.record("expected rejected, got \(outcome)")
                return
            }
            #expect(message.contains("Application ID is not valid"))
            #expect(!message.contains("\"app\""))
        }
    }

    @Test("HTTP 500 without an error body is transient")
    func serverError() async throws {
        try await withSimulator { $0.faults.failSubmits = 1 } _: { client, _ in
            let first = await client.submit(job())
            guard let failure = transientFailure(first) else { return }
            #expect(failure.kind == .serverError)
            #expect(failure.message.contains("500"))
            guard case .accepted = await client.submit(job()) else {
                Issue.record("the fault should be used up")
                return
            }
        }
    }

    @Test("HTTP 429 is transient and carries Retry-After")
    func rateLimited() async throws {
        try await withSimulator { client, port in
            try await control(port, #"{"fail_submits":1,"fail_submit_status":429,"retry_after_seconds":7}"#)
            let outcome = await client.submit(job())
            guard let failure = transientFailure(outcome) else { return }
            #expect(failure.kind == .rateLimited)
            #expect(failure.retryAfter == .seconds(7))
        }
    }

    @Test("a hanging submit times out as transient within the configured timeout")
    func hang() async throws {
        try await withSimulator { $0.faults.hangSubmits = 1 } client: { $0.submitTimeout = .milliseconds(500) } _: { client, _ in
            let started = ContinuousClock.now
            let outcome = await client.submit(job())
            let elapsed = ContinuousClock.now - started
            guard let failure = transientFailure(outcome) else { return }
            #expect(failure.kind == .timeout)
            // The simulator hangs for an hour: a loaded machine may be slow, never that slow.
            #expect(elapsed >= .milliseconds(450) && elapsed < .seconds(30))
        }
    }

    @Test("an answer that stops after its head times out as transient within the configured timeout", .timeLimit(.minutes(1)))
    func stalledAnswer() async throws {
        try await withStalledAnswers { $0.submitTimeout = .milliseconds(500) } _: { client in
            let started = ContinuousClock.now
            let outcome = await client.submit(job())
            let elapsed = ContinuousClock.now - started
            guard let failure = transientFailure(outcome) else { return }
            #expect(failure.kind == .timeout)
            #expect(elapsed >= .milliseconds(450) && elapsed < .seconds(30))
        }
    }

    @Test("a refused connection is transient")
    func connectionRefused() async throws {
        let configuration = BlitlineClient.Configuration(apiURL: "http://127.0.0.1:1", submitTimeout: .seconds(2))
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration.httpClientConfiguration)
        let client = BlitlineClient(httpClient: httpClient, configuration: configuration, logger: quietLogger)
        let outcome = await client.submit(job())
        try await httpClient.shutdown()
        guard let failure = transientFailure(outcome) else { return }
        #expect(failure.kind == .connection || failure.kind == .timeout)
    }

    @Test("a batch is one request whose outcomes match the jobs by position")
    func batch() async throws {
        try await withSimulator { client, port in
            let missingID = BlitlineJob(json: try JSONValue(parsing: #"{"src":"u","functions":[{"name":"no_op"}]}"#))!
            let outcomes = await client.submit([job(), missingID, job(src: "https://example.com/2.png")])
            #expect(outcomes.count == 3)
            guard case .accepted(let first, _) = outcomes[0], case .rejected(let message) = outcomes[1],
                case .accepted(let third, _) = outcomes[2]
            else {
                Issue.record("unexpected outcomes \(outcomes)")
                return
            }
            #expect(first != third)
            #expect(message.contains("application ID is required"))
            #expect(try await stats(port)["submit_requests"] == .number(1))
        }
    }

    @Test("a job over 250,000 characters is refused by the simulator")
    func tooLarge() async throws {
        try await withSimulator { client, _ in
            let big = String(repeating: "x", count: 250_001)
            let outcome = await client.submit(job(#","note":"\#(big)""#))
            guard case .rejected(let message) = outcome else {
                Issue.record("expected rejected, got \(outcome)")
                return
            }
            #expect(message.contains("250000"))
        }
    }

    @Test("a reply larger than the client takes is a malformed reply, and the job is sent once")
    func replyTooLarge() async throws {
        try await withSimulator(client: { $0.maxReplyBytes = 16 }) { client, port in
            let outcome = await client.submit(job())
            guard let failure = transientFailure(outcome) else { return }
            #expect(failure.kind == .malformedReply)
            #expect(failure.message.contains("too large"))
            let requests = try await stats(port)["submit_requests"]
            #expect(requests == .number(1))
        }
    }

    @Test("a submit cancelled while Blitline hangs ends at once as cancelled")
    func cancelled() async throws {
        try await withSimulator { $0.faults.hangSubmits = 1 } client: { $0.submitTimeout = .seconds(20) } _: { client, _ in
            let started = ContinuousClock.now
            let submit = Task { await client.submit(job()) }
            try await Task.sleep(for: .milliseconds(300))
            submit.cancel()
            let outcome = await submit.value
            guard let failure = transientFailure(outcome) else { return }
            #expect(failure.kind == .cancelled)
            // Well before the submit's timeout, which would have been a `.timeout`.
            #expect(ContinuousClock.now - started < .seconds(15))
        }
    }
}

/// The failure of a transient outcome; any other outcome is recorded as an issue.
private func transientFailure(
    _ outcome: SubmitOutcome, sourceLocation: SourceLocation = #_sourceLocation
) -> BlitlineFailure? {
    guard case .transient(let failure) = outcome else {
        Issue.record("expected transient, got \(outcome)", sourceLocation: sourceLocation)
        return nil
    }
    return failure
}
