import AMQP
import Blitline
import Testing

@testable import BlitlineBridge

/// The decisions about one request, without a broker: every input a producer can send and every
/// answer Blitline and the broker can give (README, "What each kind of bad input gets").
@Suite struct RequestRulesTests {
    static let now: Int64 = 1_800_000_000_000
    let rules = RequestRules(
        maxRequestBytes: 10_000, defaultApplicationID: "app", submitMaxAttempts: 5, maxRedeliveries: 5,
        jobTimeout: .seconds(1800))
    static let job: [UInt8] = Array(#"{"src":"https://example.com/a.png","functions":[{"name":"no_op"}]}"#.utf8)

    func step(
        _ headers: AMQPTable = [:], messageID: String? = "order-1", redelivered: Bool = false, body: [UInt8] = job,
        discarded: Bool = false, settled: Set<String> = []
    ) -> RequestRules.Step {
        let properties = AMQPProperties(headers: headers.isEmpty ? nil : headers, messageID: messageID)
        return rules.firstStep(
            for: RequestRules.Arrival(
                body: body, properties: properties, redelivered: redelivered, isBodyDiscarded: discarded,
                bodySize: UInt64(discarded ? 50_000_000 : body.count)),
            context: RequestEnvelope(properties), now: Self.now, isSettled: { settled.contains($0) })
    }

    func attempt(of step: RequestRules.Step) -> Int? {
        if case .submit(_, let attempt) = step { return attempt }
        return nil
    }

    func failure(of step: RequestRules.Step) -> (JobEvent.Reason, String)? {
        if case .fail(let reason, let message) = step { return (reason, message) }
        return nil
    }

    // MARK: Arrival

    /// A request that comes back (a retry after a submission whose answer was lost, a
    /// redelivery after a crash) when its job's result is already out is acknowledged, not
    /// submitted again; one that comes for the first time, or for its dead letter, is not.
    @Test func aRequestThatComesBackWithItsOutcomeRecordedIsSettled() {
        let settled: Set<String> = ["order-1"]
        let retry: AMQPTable = [BridgeHeader.requestID: .string("order-1"), BridgeHeader.attempt: .int32(2)]
        #expect(step(retry, settled: settled) == .settled)
        #expect(step(redelivered: true, settled: settled) == .settled)
        #expect(attempt(of: step(retry)) == 2, "not settled: submitted again")
        #expect(attempt(of: step(settled: settled)) == 1, "the first arrival of an id seen before is a new request")
        let failed: AMQPTable = [
            BridgeHeader.requestID: .string("order-1"), BridgeHeader.failure: .string("rejected"),
            BridgeHeader.error: .string("no"),
        ]
        #expect(failure(of: step(failed, settled: settled))?.0 == .rejected, "its dead letter is still owed")
    }

    @Test func aValidRequestIsSubmittedForTheFirstTime() {
        #expect(attempt(of: step()) == 1)
    }

    @Test(arguments: [
        (AMQPFieldValue.int64(Int64.min), 1), (.int64(Int64.max), 1), (.int32(0), 1), (.int32(-1), 1), (.int32(6), 1),
        (.string("3"), 1), (.uint64(UInt64.max), 1), (.int8(3), 3), (.int32(5), 5), (.int64(2), 2),
    ])
    func theAttemptHeaderIsTakenOnlyWithinRange(value: AMQPFieldValue, expected: Int) {
        #expect(attempt(of: step([BridgeHeader.attempt: value])) == expected)
    }

    @Test func requestIDsOfMoreThan200BytesAreInvalidWhateverTheirCharacters() {
        #expect(attempt(of: step(messageID: String(repeating: "a", count: 200))) == 1)
        for id in [String(repeating: "a", count: 201), String(repeating: "€", count: 67), String(repeating: "\u{FFFD}", count: 85)] {
            let failed = failure(of: step(messageID: id))
            #expect(failed?.0 == .invalidRequest)
            #expect(failed?.1.contains("at most 200") == true, "\(failed?.1 ?? "no failure")")
        }
    }

    @Test func aGeneratedIDInTheHeaderIsTakenOnlyWhenShort() {
        let short = RequestEnvelope(AMQPProperties(headers: [BridgeHeader.requestID: .string("gen-1")]))
        #expect(short.requestID == "gen-1")
        let long = RequestEnvelope(AMQPProperties(headers: [BridgeHeader.requestID: .string(String(repeating: "x", count: 5000))]))
        #expect(long.requestID.utf8.count == 36, "a fresh UUID instead")
        #expect(long.problem == nil)
    }

    @Test func onlyAWellFormedTraceparentIsCarried() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for (value, kept) in [
            (valid, true), (String(repeating: "0", count: 13_000), false), ("garbage", false),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false), (valid + "-extra", false),
        ] {
            let context = RequestEnvelope(AMQPProperties(headers: ["traceparent": .string(value)], messageID: "r"))
            #expect((context.traceparent == value) == kept, "\(value.prefix(60))")
            #expect(context.traceparent == nil || context.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        }
    }

    @Test func aReplyToThatCannotBeRoutedToIsInvalid() {
        let properties = AMQPProperties(replyTo: String(repeating: "\u{FFFD}", count: 100), messageID: "r")
        let failed = rules.firstStep(
            for: .init(body: Self.job, properties: properties, redelivered: false, bodySize: 10),
            context: RequestEnvelope(properties), now: Self.now)
        #expect(failure(of: failed)?.0 == .invalidRequest)
        #expect(RequestEnvelope(properties).routableReplyTo == nil)
    }

    @Test func aBodyThatWasNotKeptIsInvalidAndSaysItsSize() {
        let failed = failure(of: step(body: [], discarded: true))
        #expect(failed?.0 == .invalidRequest)
        #expect(failed?.1 == "the request is 50000000 bytes; at most 10000 bytes are accepted")
    }

    @Test func anInvalidJobFailsWithWhatIsWrong() {
        let failed = failure(of: step(body: Array(#"{"src":"x"}"#.utf8)))
        #expect(failed?.0 == .invalidRequest)
        #expect(failed?.1.contains("functions") == true)
    }

    // MARK: Redeliveries

    @Test func aClassicQueueRedeliveryIsCountedByTheBridge() {
        #expect(step(redelivered: true) == .countRedelivery(1))
        #expect(step([BridgeHeader.redeliveries: .int32(4)], redelivered: true) == .countRedelivery(5))
        let tooOften = failure(of: step([BridgeHeader.redeliveries: .int32(5)], redelivered: true))
        #expect(tooOften?.0 == .submitFailed)
        #expect(tooOften?.1.contains("delivered 7 times") == true, "\(tooOften?.1 ?? "")")
        // A count out of range is not believed: counting starts again.
        #expect(step([BridgeHeader.redeliveries: .int64(-7)], redelivered: true) == .countRedelivery(1))
        #expect(step([BridgeHeader.redeliveries: .int64(Int64.max)], redelivered: true) == .countRedelivery(1))
        // Not redelivered: the count it carries only matters on its next redelivery.
        #expect(attempt(of: step([BridgeHeader.redeliveries: .int32(5)])) == 1)
    }

    @Test func aQuorumQueueCountsRedeliveriesItself() {
        #expect(attempt(of: step(["x-delivery-count": .int64(5)], redelivered: true)) == 1)
        #expect(failure(of: step(["x-delivery-count": .int64(6)], redelivered: true))?.0 == .submitFailed)
        // A producer's x-delivery-count on a first delivery means nothing.
        #expect(attempt(of: step(["x-delivery-count": .int64(99)])) == 1)
    }

    // MARK: What a request reached before

    @Test func aFailureDecidedBeforeIsPublishedWithoutSubmitting() {
        let headers: AMQPTable = [BridgeHeader.failure: .string("rejected"), BridgeHeader.error: .string("no")]
        #expect(step(headers) == .fail(.rejected, message: "no"))
        // A reason the bridge does not know is not believed.
        #expect(attempt(of: step([BridgeHeader.failure: .string("pwned"), BridgeHeader.error: .string("x")])) == 1)
    }

    @Test func aJobAcceptedBeforeIsScheduledWithoutSubmitting() {
        func accepted(_ jobID: String, at submittedAt: Int64) -> RequestRules.Step {
            step([BridgeHeader.jobID: .string(jobID), BridgeHeader.submittedAt: .int64(submittedAt)])
        }
        #expect(accepted("2m-Ir2YMXQ3yec0NV476xag", at: Self.now - 60_000)
            == .schedule(jobID: "2m-Ir2YMXQ3yec0NV476xag", submittedAt: Self.now - 60_000, applicationID: "app"))
        // Past its deadline (setbacks outlasted JOB_TIMEOUT), still scheduled, not submitted, while
        // the outcomes stream keeps the job's outcome (JOB_TIMEOUT plus an hour).
        #expect(accepted("job", at: Self.now - 1_800_000) == .schedule(jobID: "job", submittedAt: Self.now - 1_800_000, applicationID: "app"))
        #expect(accepted("job", at: Self.now - 5_399_999) == .schedule(jobID: "job", submittedAt: Self.now - 5_399_999, applicationID: "app"))
        // From the future, older than the stream's memory, or not a job id: submitted as any request.
        #expect(attempt(of: accepted("job", at: Self.now + 60_000)) == 1)
        #expect(attempt(of: accepted("job", at: Self.now - 5_400_000)) == 1)
        #expect(attempt(of: accepted("a/b", at: Self.now)) == 1)
        #expect(attempt(of: accepted(String(repeating: "j", count: 129), at: Self.now)) == 1)
    }

    // MARK: Submission

    @Test func blitlinesAnswerDecidesTheNextStep() {
        let accepted = rules.afterSubmit(
            .accepted(jobID: "j1", images: []), attempt: 2, submittedAt: 7, applicationID: "app")
        #expect(accepted == .schedule(jobID: "j1", submittedAt: 7, applicationID: "app"))
        #expect(
            rules.afterSubmit(.rejected(message: "bad"), attempt: 1, submittedAt: 7, applicationID: nil)
                == .fail(.rejected, message: "bad"))
        let cancelled = SubmitOutcome.transient(BlitlineFailure(kind: .cancelled, message: "stopping"))
        #expect(rules.afterSubmit(cancelled, attempt: 1, submittedAt: 7, applicationID: nil) == .giveBack)
    }

    @Test func transientFailuresAreRetriedWithGrowingDelaysThenFail() {
        let failure = SubmitOutcome.transient(BlitlineFailure(kind: .serverError, message: "HTTP 500"))
        for attempt in 1...4 {
            #expect(
                rules.afterSubmit(failure, attempt: attempt, submittedAt: 7, applicationID: nil)
                    == .retry(delayStep: attempt - 1, headers: [BridgeHeader.attempt: .int32(Int32(attempt + 1))]))
        }
        let last = self.failure(of: rules.afterSubmit(failure, attempt: 5, submittedAt: 7, applicationID: nil))
        #expect(last?.0 == .submitFailed)
        #expect(last?.1 == "Blitline could not be reached after 5 attempts: HTTP 500")
        let limited = SubmitOutcome.transient(BlitlineFailure(kind: .rateLimited, message: "429", retryAfter: .seconds(20)))
        #expect(
            rules.afterSubmit(limited, attempt: 1, submittedAt: 7, applicationID: nil)
                == .retry(delayStep: 2, headers: [BridgeHeader.attempt: .int32(2)]), "at least Retry-After: 30 s")
    }

    @Test(arguments: [Int.min, -1, 0, 1, 4, 5, 1000, Int.max])
    func theRetryStepNeverTraps(attempt: Int) {
        #expect(Topology.retryDelays.indices.contains(Topology.retryStep(attempt: attempt, minimum: .seconds(Int64.max))))
        #expect(Topology.retryDelays.indices.contains(Topology.retryStep(attempt: attempt, minimum: nil)))
    }

    // MARK: Setbacks

    @Test func aSetbackPutsTheRequestBackWithWhatItReached() {
        #expect(
            rules.afterSetback(of: .schedule(jobID: "j1", submittedAt: 7, applicationID: "app"), setbacks: 0)
                == .retry(
                    delayStep: 0,
                    headers: [
                        BridgeHeader.setbacks: .int32(1), BridgeHeader.jobID: .string("j1"),
                        BridgeHeader.submittedAt: .int64(7),
                    ]))
        #expect(
            rules.afterSetback(of: .fail(.invalidRequest, message: "not JSON"), setbacks: 2)
                == .retry(
                    delayStep: 2,
                    headers: [
                        BridgeHeader.setbacks: .int32(3), BridgeHeader.failure: .string("invalid_request"),
                        BridgeHeader.error: .string("not JSON"),
                    ]))
        let capped = rules.afterSetback(of: .fail(.timeout, message: "m"), setbacks: 5000)
        if case .retry(let delayStep, let headers) = capped {
            #expect(delayStep == Topology.retryDelays.count - 1)
            #expect(headers[BridgeHeader.setbacks] == .int32(Int32(RequestRules.maxSetbacks)))
        } else {
            Issue.record("\(capped)")
        }
    }

    @Test func whenNotEvenACopyCanBePublishedTheRequestIsHandedBackOrHeldWithWhatItReached() {
        #expect(rules.afterSetback(of: .retry(delayStep: 1, headers: [:]), setbacks: 0) == .requeueAfterPause)
        // A copy that carries what the request reached is held and tried again, with the same
        // delay: the message in the queue lacks what it reached.
        let accepted: AMQPTable = [BridgeHeader.jobID: .string("job-1"), BridgeHeader.submittedAt: .int64(1)]
        #expect(
            rules.afterSetback(of: .retry(delayStep: 0, headers: accepted), setbacks: 1)
                == .retryAfterPause(delayStep: 0, headers: accepted.merging([BridgeHeader.setbacks: .int32(2)])))
        let failed: AMQPTable = [BridgeHeader.failure: .string("rejected"), BridgeHeader.error: .string("no")]
        #expect(
            rules.afterSetback(of: .retryAfterPause(delayStep: 1, headers: failed), setbacks: 2)
                == .retryAfterPause(delayStep: 1, headers: failed.merging([BridgeHeader.setbacks: .int32(3)])))
        #expect(rules.afterSetback(of: .countRedelivery(2), setbacks: 0) == .requeueAfterPause)
    }

    @Test func aCopyIsCleanPersistentAndCarriesOnlyTheBridgesHeadersGivenAnew() {
        let request = AMQPProperties(
            headers: [
                "traceparent": .string("t"), BridgeHeader.attempt: .int32(3), BridgeHeader.jobID: .string("forged"),
                "custom": .bool(true),
            ],
            deliveryMode: AMQPProperties.transient, correlationID: "c", expiration: "1000", messageID: "m", userID: "someone")
        let copy = request.copyForRepublishing(bridgeHeaders: [BridgeHeader.error: .string("why")])
        #expect(copy.userID == nil && copy.expiration == nil && copy.deliveryMode == AMQPProperties.persistent)
        #expect(copy.headers == ["traceparent": .string("t"), "custom": .bool(true), BridgeHeader.error: .string("why")])
        #expect(copy.messageID == "m" && copy.correlationID == "c")
        let bare = request.copyForRepublishing(bridgeHeaders: [:], keepingHeaders: false)
        #expect(bare.headers == nil)
    }

    @Test func eventPropertiesLeaveOutWhatAShortStringCannotHold() {
        let long = String(repeating: "x", count: 250)
        let event = JobEvent.failure(
            RequestEnvelope(requestID: long, correlationID: long + long, replyTo: nil, traceparent: nil),
            reason: .invalidRequest, message: "too long")
        #expect(event.properties.messageID == nil, "\(long)/failed is 257 bytes")
        #expect(event.properties.correlationID == nil)
        #expect(event.json["id"]?.stringValue == long + "/failed")
        #expect(event.json["data"]?["correlation_id"]?.stringValue == long + long)
    }
}

/// The decisions of polling mode, without Blitline or a broker.
@Suite struct PollRulesTests {
    let job = PendingJob(
        context: RequestEnvelope(requestID: "r", correlationID: nil, replyTo: nil, traceparent: nil), jobID: "j",
        submittedAt: 0, deadline: 1_000_000, applicationKey: "k")

    @Test func aJobIsPolledUntilItsDeadlinePlusTheLateWindow() {
        #expect(PollProcessor.isWanted(job, now: 1_000_000))
        #expect(PollProcessor.isWanted(job, now: 1_000_000 + PollProcessor.lateWindow.milliseconds - 1))
        #expect(!PollProcessor.isWanted(job, now: 1_000_000 + PollProcessor.lateWindow.milliseconds))
    }

    @Test func aResultIsLateOnlyWhenItComesAfterTheDeadline() {
        let result = JobResult(jobID: "j")
        #expect(PollProcessor.step(after: .result(result), for: job, at: 1_000_000, answeredIn: .zero) == .publish(result, late: false))
        #expect(PollProcessor.step(after: .result(result), for: job, at: 1_000_001, answeredIn: .zero) == .publish(result, late: true))
    }

    @Test func noResultYetPollsAgainPausingWhenBlitlineAnsweredAtOnce() {
        #expect(PollProcessor.step(after: .pending, for: job, at: 1, answeredIn: .seconds(30)) == .pollAgain(pause: false, .pending))
        #expect(PollProcessor.step(after: .pending, for: job, at: 1, answeredIn: .milliseconds(5)) == .pollAgain(pause: true, .pending))
        let failed = PollOutcome.failed(BlitlineFailure(kind: .timeout, message: "slow"))
        #expect(PollProcessor.step(after: failed, for: job, at: 1, answeredIn: .seconds(60)) == .pollAgain(pause: true, .failed))
    }

    @Test func aRefusalForTheRateHoldsTheApplicationIDForItsRetryAfterOrOneSecond() {
        let refused = { (retryAfter: Duration?) in
            PollOutcome.failed(BlitlineFailure(kind: .rateLimited, message: "429", retryAfter: retryAfter))
        }
        #expect(PollProcessor.retryAfter(of: refused(.seconds(7))) == .seconds(7))
        #expect(PollProcessor.retryAfter(of: refused(nil)) == .seconds(1))
        #expect(PollProcessor.retryAfter(of: .failed(BlitlineFailure(kind: .timeout, message: "slow"))) == nil)
        #expect(PollProcessor.retryAfter(of: .pending) == nil)
    }

    @Test func longPollsAreSizedForTheRateAndTheHoldTime() {
        #expect(PollProcessor.concurrency(rate: 4.5, holdTime: .seconds(60)) == 270)
        #expect(PollProcessor.concurrency(rate: 0.01, holdTime: .seconds(60)) == 1)
        var configuration = BridgeConfiguration()
        #expect(configuration.effectivePollConcurrency == 270)
        configuration.pollRate = 10
        #expect(configuration.effectivePollConcurrency == 540)
        configuration.pollRate = 10_000
        #expect(configuration.effectivePollConcurrency == 65535)
        configuration.pollConcurrency = 20
        #expect(configuration.effectivePollConcurrency == 20)
        #expect(configuration.blitlineConnectionsPerHost == 36)
    }
}
