import AMQP
import Blitline
import Logging
import Synchronization
import Testing

@testable import BlitlineBridge

/// The thin layer that carries a request's steps out, against a fake broker and a fake Blitline:
/// a publish refused for one request settles that request alone, and a job Blitline accepted is
/// never submitted again.
@Suite struct RequestProcessorTests {
    /// A request message that records how it was settled.
    final class Message: RequestMessage, Sendable {
        let body: [UInt8]
        let properties: AMQPProperties
        let redelivered: Bool
        var isBodyDiscarded: Bool { false }
        var bodySize: UInt64 { UInt64(body.count) }
        let settled = Mutex<[String]>([])

        init(_ body: [UInt8] = RequestRulesTests.job, properties: AMQPProperties = AMQPProperties(messageID: "r1"), redelivered: Bool = false) {
            self.body = body
            self.properties = properties
            self.redelivered = redelivered
        }

        func ack() { settled.withLock { $0.append("ack") } }
        func requeue() { settled.withLock { $0.append("requeue") } }
        func deadLetterInPlace() { settled.withLock { $0.append("reject") } }
        var settlements: [String] { settled.withLock { $0 } }
    }

    /// The broker: records every publish; `refuse` names the kinds of publish it refuses, with the error.
    final class Broker: RequestEffects {
        struct PutBack: Sendable {
            let headers: AMQPTable
            let delayStep: Int?
            let properties: AMQPProperties
        }

        let refuse: Mutex<[String: AMQPError]>
        let log = Mutex<[String]>([])
        let putBacks = Mutex<[PutBack]>([])

        init(refusing refuse: [String: AMQPError] = [:]) { self.refuse = Mutex(refuse) }

        private func record(_ kind: String) throws {
            if let error = refuse.withLock({ $0[kind] }) { throw error }
            log.withLock { $0.append(kind) }
        }

        func publish(_ event: JobEvent) async throws { try record("event:\(event.id)") }
        func deadLetter(_ request: RequestMessage, context: RequestEnvelope, error: String) async throws { try record("dead") }
        func putBack(_ request: RequestMessage, context: RequestEnvelope, headers: AMQPTable, delayStep: Int?) async throws {
            try record("putBack")
            let properties = request.properties.copyForRepublishing(
                bridgeHeaders: headers.merging([BridgeHeader.requestID: .string(context.requestID)]))
            putBacks.withLock { $0.append(PutBack(headers: headers, delayStep: delayStep, properties: properties)) }
        }
        func scheduleDeadline(_ job: PendingJob, due: Bool) async throws {
            try record((due ? "due deadline:" : "deadline:") + job.jobID)
        }
        func schedulePoll(_ job: PendingJob, pause: Bool) async throws { try record("poll") }

        var published: [String] { log.withLock { $0 } }
        var lastPutBack: PutBack? { putBacks.withLock { $0.last } }
        func allow(_ kind: String) { _ = refuse.withLock { $0.removeValue(forKey: kind) } }
    }

    /// Blitline: answers each submission with the next outcome, and counts them.
    final class FakeBlitline: JobSubmitting {
        let outcomes: Mutex<[SubmitOutcome]>
        let submitted = Mutex(0)
        init(_ outcomes: [SubmitOutcome]) { self.outcomes = Mutex(outcomes) }
        func submit(_ job: BlitlineJob, bytes: Int) async -> SubmitOutcome {
            submitted.withLock { $0 += 1 }
            return outcomes.withLock { $0.count > 1 ? $0.removeFirst() : $0[0] }
        }
        var count: Int { submitted.withLock { $0 } }
    }

    static let nacked = AMQPError(.nacked, "the broker refused the message (basic.nack)")

    func processor(_ blitline: FakeBlitline) -> RequestProcessor {
        var configuration = BridgeConfiguration()
        configuration.postbackBaseURL = "https://bridge.example.com"
        configuration.postbackSecrets = [String(repeating: "k", count: 32)]
        configuration.blitlineApplicationID = "app"
        return RequestProcessor(
            configuration: configuration,
            rules: RequestRules(
                maxRequestBytes: 10_000, defaultApplicationID: "app", submitMaxAttempts: 5, maxRedeliveries: 5,
                jobTimeout: .seconds(1800)),
            submitter: blitline, postbackKeys: PostbackToken.Keys(secrets: configuration.postbackSecrets),
            metrics: BridgeMetrics(),
            logger: Logger(label: "test"), requeuePause: .zero)
    }

    @Test func anAcceptedJobIsScheduledThenAcknowledged() async throws {
        let blitline = FakeBlitline([.accepted(jobID: "j1", images: [])])
        let broker = Broker()
        let message = Message()
        try await processor(blitline).process(message, effects: broker)
        #expect(broker.published == ["deadline:j1"])
        #expect(message.settlements == ["ack"])
    }

    @Test func aRefusedDeadlineNeverMakesBlitlineRunTheJobAgain() async throws {
        let blitline = FakeBlitline([.accepted(jobID: "j1", images: [])])
        let broker = Broker(refusing: ["deadline:j1": Self.nacked])
        let message = Message()
        try await processor(blitline).process(message, effects: broker)
        #expect(message.settlements == ["ack"], "settled by its copy")
        let copy = try #require(broker.lastPutBack)
        #expect(copy.headers[BridgeHeader.jobID] == .string("j1"))
        #expect(copy.delayStep == 0)

        // The copy comes back after its delay, and the broker has room again.
        broker.allow("deadline:j1")
        let back = Message(properties: copy.properties)
        try await processor(blitline).process(back, effects: broker)
        #expect(broker.published == ["putBack", "deadline:j1"])
        #expect(back.settlements == ["ack"])
        #expect(blitline.count == 1, "Blitline saw the job once")
    }

    @Test func aDeadlineRefusedUntilPastItIsDueAtOnceNeverSubmittedAgain() async throws {
        let blitline = FakeBlitline([.accepted(jobID: "j1", images: [])])
        let broker = Broker(refusing: ["deadline:j1": Self.nacked])
        try await processor(blitline).process(Message(), effects: broker)
        let copy = try #require(broker.lastPutBack)

        // The copy comes back after JOB_TIMEOUT (30 minutes here), then hours later.
        broker.allow("deadline:j1")
        for hoursLater in [Int64(0), 1] {
            var late = processor(blitline)
            late.clock = .fixed(at: WallClock.system.now() + 1_800_000 + hoursLater * 3_600_000)
            let back = Message(properties: copy.properties)
            try await late.process(back, effects: broker)
            #expect(back.settlements == ["ack"])
        }
        // Then its deadline was due at once; an hour later, the outcomes stream may have forgotten
        // the job, and the request is submitted afresh with a deadline of its own.
        #expect(broker.published == ["putBack", "due deadline:j1", "deadline:j1"])
        #expect(blitline.count == 2)
    }

    @Test func aRefusedFailureEventIsRepeatedLaterNeverTheDeadLetter() async throws {
        let blitline = FakeBlitline([.rejected(message: "Blitline refused the job: bad src")])
        let broker = Broker(refusing: ["event:r1/failed": Self.nacked])
        let message = Message()
        try await processor(blitline).process(message, effects: broker)
        #expect(message.settlements == ["ack"])
        #expect(!broker.published.contains("dead"), "no dead letter before its event is out")
        let copy = try #require(broker.lastPutBack)
        #expect(copy.headers[BridgeHeader.failure] == .string("rejected"))

        broker.allow("event:r1/failed")
        try await processor(blitline).process(Message(properties: copy.properties), effects: broker)
        #expect(broker.published == ["putBack", "event:r1/failed", "dead"])
        #expect(blitline.count == 1, "a refusal is not asked again")
    }

    @Test func whenNoCopyCanBePublishedTheRequestIsHandedBackUnacknowledged() async throws {
        let broker = Broker(refusing: ["event:r1/failed": Self.nacked, "putBack": AMQPError(.returned, replyCode: 312, "NO_ROUTE")])
        let message = Message(Array("not json".utf8))
        try await processor(FakeBlitline([.accepted(jobID: "x", images: [])])).process(message, effects: broker)
        #expect(message.settlements == ["requeue"])
    }

    @Test func aLostSessionThrowsAndLeavesTheRequestForTheNext() async throws {
        let broker = Broker(refusing: ["deadline:j1": AMQPError(.connectionClosed, "socket closed")])
        let message = Message()
        await #expect(throws: AMQPError.self) {
            try await processor(FakeBlitline([.accepted(jobID: "j1", images: [])])).process(message, effects: broker)
        }
        #expect(message.settlements.isEmpty)
    }

    @Test func aSessionThatEndsSubmitsNothingMore() async throws {
        let blitline = FakeBlitline([.accepted(jobID: "j1", images: [])])
        let message = Message()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await processor(blitline).process(message, effects: Broker())
        }
        try await task.value
        #expect(blitline.count == 0)
        #expect(message.settlements.isEmpty)
    }

    @Test func aRedeliveryOnAClassicQueueIsCountedOnACopyThatKeepsWhatItReached() async throws {
        let broker = Broker()
        let message = Message(
            properties: AMQPProperties(headers: [BridgeHeader.attempt: .int32(3)], messageID: "r1"), redelivered: true)
        let blitline = FakeBlitline([.accepted(jobID: "j1", images: [])])
        try await processor(blitline).process(message, effects: broker)
        #expect(blitline.count == 0)
        let copy = try #require(broker.lastPutBack)
        #expect(copy.delayStep == nil, "straight back to the jobs queue")
        #expect(copy.headers[BridgeHeader.redeliveries] == .int32(1))
        #expect(copy.headers[BridgeHeader.attempt] == .int32(3))
        #expect(message.settlements == ["ack"])
    }
}
