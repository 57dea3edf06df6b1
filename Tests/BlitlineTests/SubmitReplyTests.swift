import Testing

@testable import Blitline

/// Whether Blitline answered a batch job by job or as a whole: a refusal of one job is final for
/// that job only, and only a refusal that names no job says nothing of each.
@Suite struct SubmitReplyTests {
    func classify(_ body: String, status: Int = 200, jobs: Int = 3) -> SubmitAnswer {
        SubmitReply.classify(status: status, retryAfter: nil, body: Array(body.utf8), jobCount: jobs, isBatch: true)
    }

    @Test func perJobRefusalsAreEachJobsOwnAnswerWhateverTheStatus() {
        let body = #"{"results":[{"error":"bad app"},{"error":"bad app"},{"error":"bad app"}]}"#
        for status in [200, 400, 401] {
            #expect(classify(body, status: status) == .each(Array(repeating: .rejected(message: "Blitline refused the job: bad app"), count: 3)))
        }
        let mixed = classify(#"{"results":[{"job_id":"a"},{"error":"no"},{"job_id":"c"}]}"#, status: 400)
        #expect(mixed.outcomes(jobCount: 3).map { if case .rejected = $0 { true } else { false } } == [false, true, false])
    }

    @Test func aRefusalThatNamesNoJobIsAnAnswerForTheWhole() {
        #expect(classify(#"{"results":{"error":"Invalid JSON"}}"#, status: 400) == .whole(.rejected(message: "Blitline refused the job: Invalid JSON")))
        if case .whole(.rejected) = classify("Payload Too Large", status: 413) {} else { Issue.record("413 is a refusal of the whole") }
        if case .whole(.transient) = classify("", status: 503) {} else { Issue.record("503 is transient for the whole") }
    }
}
