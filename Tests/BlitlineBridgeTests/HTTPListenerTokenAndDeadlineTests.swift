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

    /// RFC 4231's test cases 1 and 6 (a key shorter than a block, and one longer, hashed first),
    /// and a key of exactly a block: the signature is standard HMAC-SHA256.
    @Test(arguments: [
        ([UInt8](repeating: 0x0B, count: 20), "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ([UInt8](repeating: 0xAA, count: 131), "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        (Array("k".utf8) + [UInt8](repeating: UInt8(ascii: "k"), count: 63), "exactly a block of key",
         "d4229b87e09c5dba84a00e3679ece32b5de4bb58a64d28afe3800adb898c6920"),
    ])
    func theSignatureIsHMACSHA256(key: [UInt8], message: String, expected: String) {
        let keyed = KeyedSHA256(key: key)
        let code = keyed.code(Array(message.utf8.prefix(3)), Array(message.utf8.dropFirst(3)))
        let hex = code.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(hex == expected)
        #expect(keyed.isCode(Array(code), of: [], Array(message.utf8)))
        var altered = Array(code)
        altered[31] ^= 1
        #expect(!keyed.isCode(altered, of: [], Array(message.utf8)))
        #expect(!keyed.isCode(Array(code.prefix(31)), of: [], Array(message.utf8)))
    }

    /// A token signed before this release (its HMAC computed independently, with Python's `hmac`)
    /// still verifies: jobs in flight across an upgrade can post back.
    @Test func aTokenSignedByAnEarlierReleaseVerifies() throws {
        let token = "2.eyJyIjoici0xIiwiYyI6ImMtMSIsInQiOiJxIiwicyI6MTgwMDAwMDAwMDAwMCwiZSI6MTgwMDA5MDAwMDAwMH0"
            + ".qJWnnmA8CCXuT00FohT4WMX-VtXf-o52DsFZcjf8t_E"
        let keys = PostbackToken.Keys(secrets: ["another-secret", Self.secret])
        let verified = try PostbackToken(verifying: token[...], keys: keys, now: 1_800_000_000_000)
        #expect(verified.context == Self.context)
        #expect(verified.expiresAt == 1_800_090_000_000)
        var same = PostbackToken(context: Self.context, submittedAt: 1_800_000_000_000)
        same.expiresAt = 1_800_090_000_000
        #expect(same.signed(with: PostbackToken.Keys(secrets: [Self.secret])) == token)
    }

    /// The postback route read off a path: the token after `{prefix}/postback/`, nothing else.
    @Test func thePostbackRouteIsThePrefixThenPostbackThenOneSegment() {
        func token(_ path: String, _ prefix: String = "/hooks") -> String? {
            HTTPConnectionHandler<PostbackHandler>.token(path[...], prefix: prefix).map(String.init)
        }
        #expect(token("/hooks/postback/2.eyJy.c2ln") == "2.eyJy.c2ln")
        #expect(token("/postback/t", "") == "t")
        #expect(token("/hooks/postback") == "")
        #expect(token("/hooks/postback/") == "")
        #expect(token("/hooks/postback/a/b") == nil)
        #expect(token("/hooks/postbacks/t") == nil)
        #expect(token("/hook/postback/t") == nil)
        #expect(token("/hooks/Postback/t") == nil)
        #expect(token("/hooks/postback/caf\u{E9}") == "caf\u{E9}")
        #expect(token("/hooks\u{301}/postback/t") == nil)
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
