import Testing

@testable import BlitlineBridge

/// The listener's pure parts: postback tokens (versions, expiry, rotation), the connection
/// deadlines' state machine.
@Suite struct HTTPListenerTokenAndDeadlineTests {
    static let secret = "a-secret-of-at-least-thirty-two-bytes-0001"
    static let context = RequestEnvelope(requestID: "r-1", correlationID: "c-1", replyTo: "q", traceparent: nil)
    static let hour: Int64 = 3_600_000

    // MARK: Tokens

    @Test func aTokenIsValidForJobTimeoutPlusADay() throws {
        let keys = PostbackToken.Keys(secrets: [Self.secret], jobTimeout: .seconds(1800))
        let submitted: Int64 = 1_800_000_000_000
        let token = PostbackToken(context: Self.context, submittedAt: submitted).signed(with: keys)
        #expect(token.hasPrefix("2."))
        let lastValid = submitted + Self.hour / 2 + 24 * Self.hour
        let verified = try PostbackToken(verifying: token[...], keys: keys, now: lastValid)
        #expect(verified.context == Self.context)
        #expect(verified.submittedAt == submitted)
        #expect(throws: PostbackToken.Rejection.expired) {
            try PostbackToken(verifying: token[...], keys: keys, now: lastValid + 1)
        }
    }

    /// The expiry is signed in: a verifier with a shorter `JOB_TIMEOUT` still honours it.
    @Test func theExpiryIsTheSignersAndCannotBeAltered() throws {
        let signer = PostbackToken.Keys(secrets: [Self.secret], jobTimeout: .seconds(7200))
        let verifier = PostbackToken.Keys(secrets: [Self.secret], jobTimeout: .seconds(60))
        let token = PostbackToken(context: Self.context, submittedAt: 0).signed(with: signer)
        _ = try PostbackToken(verifying: token[...], keys: verifier, now: 2 * Self.hour + 24 * Self.hour)

        var parts = token.split(separator: ".").map(String.init)
        var payload = try #require(Base64URL.decode(parts[1][...]))
        let e = try #require(payload.lastIndex(of: UInt8(ascii: "e")))
        payload[e + 3] = payload[e + 3] == UInt8(ascii: "9") ? UInt8(ascii: "8") : UInt8(ascii: "9")
        parts[1] = Base64URL.encode(payload)
        #expect(throws: PostbackToken.Rejection.badSignature) {
            try PostbackToken(verifying: parts.joined(separator: ".")[...], keys: verifier, now: 0)
        }
    }

    @Test func versionOneTokensVerifyUntilTheyExpire() throws {
        let keys = PostbackToken.Keys(secrets: [Self.secret], jobTimeout: .seconds(1800))
        let token = PostbackToken(context: Self.context, submittedAt: 0).signed(with: keys, version: 1)
        #expect(!token.hasPrefix("2."))
        #expect(token.split(separator: ".").count == 2)
        let verified = try PostbackToken(verifying: token[...], keys: keys, now: 24 * Self.hour)
        #expect(verified.context == Self.context)
        #expect(throws: PostbackToken.Rejection.expired) {
            try PostbackToken(verifying: token[...], keys: keys, now: 25 * Self.hour)
        }
    }

    /// A version 1 MAC does not make a version 2 token of the same payload, nor the reverse.
    @Test func versionsCannotBePassedOffAsEachOther() throws {
        let keys = PostbackToken.Keys(secrets: [Self.secret])
        let one = PostbackToken(context: Self.context, submittedAt: 0).signed(with: keys, version: 1)
        #expect(throws: PostbackToken.Rejection.badSignature) {
            try PostbackToken(verifying: ("2." + one)[...], keys: keys, now: 0)
        }
        let two = PostbackToken(context: Self.context, submittedAt: 0).signed(with: keys)
        #expect(throws: PostbackToken.Rejection.badSignature) {
            try PostbackToken(verifying: two.dropFirst(2), keys: keys, now: 0)
        }
    }

    @Test func whatIsNotATokenIsMalformedAndForeignOnesAreBadlySigned() throws {
        let keys = PostbackToken.Keys(secrets: [Self.secret])
        for garbage in ["", "garbage", "a.b", "3.e30.AAAA", "2..", "2.a.b.c"] {
            #expect(throws: PostbackToken.Rejection.malformed, "\(garbage)") {
                try PostbackToken(verifying: garbage[...], keys: keys, now: 0)
            }
        }
        let foreign = PostbackToken(context: Self.context, submittedAt: 0)
            .signed(with: "another-secret-of-at-least-thirty-two-bytes")
        #expect(throws: PostbackToken.Rejection.badSignature) {
            try PostbackToken(verifying: foreign[...], keys: keys, now: 0)
        }
        let rotated = PostbackToken.Keys(secrets: ["another-secret-of-at-least-thirty-two-bytes", Self.secret])
        _ = try PostbackToken(verifying: foreign[...], keys: rotated, now: 0)
    }

    // MARK: Connection deadlines

    @Test func aConnectionOwesItsHeadThenItsBodyThenTheNextHead() {
        var deadlines = RequestDeadlines(headerTimeout: .seconds(10), bodyTimeout: .seconds(20))
        #expect(deadlines.connectionOpened() == .arm(.seconds(10), .head))
        #expect(deadlines.headReceived() == .arm(.seconds(20), .body))
        #expect(deadlines.bodyEnded() == .disarm, "the server answers now; the client owes nothing")
        #expect(deadlines.answerWritten() == .arm(.seconds(10), .head))
    }

    /// A refusal written before the body ended leaves the body's deadline running, so a client
    /// that keeps trickling a body nobody reads is still cut.
    @Test func anAnswerBeforeTheBodyEndsKeepsTheBodyDeadline() {
        var deadlines = RequestDeadlines(headerTimeout: .seconds(10), bodyTimeout: .seconds(20))
        _ = deadlines.connectionOpened()
        _ = deadlines.headReceived()
        #expect(deadlines.answerWritten() == .keep)
        #expect(deadlines.bodyEnded() == .arm(.seconds(10), .head))
    }
}
