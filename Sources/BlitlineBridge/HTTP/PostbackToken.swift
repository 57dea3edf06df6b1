import Blitline
import Crypto
import Foundation

/// The signed last segment of a postback URL. It carries everything the event needs, so any
/// instance can handle any postback without shared state, an expiry, and an HMAC-SHA256 that
/// proves the bridge made it (Blitline itself signs nothing).
///
/// Forms, told apart by their first segment (a payload's base64url always starts with `ey`):
/// - version 2, signed since postback URLs expire:
///   `"2." base64url(payload JSON) "." base64url(HMAC-SHA256(secret, "blitline-bridge/2." payload))`,
///   the payload with an expiry `e`;
/// - version 1 (no version segment): `base64url(payload JSON) "." base64url(HMAC-SHA256(secret, payload))`,
///   still verified so that jobs submitted before an upgrade can post back; they expire at
///   `submittedAt` plus the keys' validity, like version 2 tokens signed then would.
///
/// A token is valid until `JOB_TIMEOUT` plus 24 hours after submission (README, "HTTP listener");
/// later it is refused as ``Rejection/expired``.
struct PostbackToken: Sendable, Hashable {
    var context: RequestEnvelope
    /// Milliseconds since the Unix epoch.
    var submittedAt: Int64
    /// Milliseconds since the Unix epoch after which the token is refused; `nil` until signed
    /// or read (then `submittedAt` plus the keys' validity).
    var expiresAt: Int64?

    /// The version that ``signed(with:)-(Keys)`` writes.
    static let currentVersion = 2
    /// How long a postback URL outlives its job's deadline: Blitline retries for about ten
    /// minutes, and an operator may replay a late postback within a day.
    static let graceAfterJobTimeout: Duration = .seconds(24 * 3600)

    /// Why a token was not accepted.
    enum Rejection: Error, Equatable {
        /// Not a token at all (401).
        case malformed
        /// Well formed, but no secret signed it (403).
        case badSignature
        /// Signed by us, but past its expiry (403).
        case expired
    }

    /// The keys made from `POSTBACK_SECRET` (the first signs, any verifies) and how long a token
    /// stays valid after submission.
    struct Keys: Sendable {
        /// HMAC-SHA256 keyed with each secret, in the order of `POSTBACK_SECRET`.
        let keys: [KeyedSHA256]
        /// From submission to expiry: `JOB_TIMEOUT` plus ``PostbackToken/graceAfterJobTimeout``.
        let validity: Duration

        init(secrets: [String], jobTimeout: Duration = BridgeConfiguration().jobTimeout) {
            keys = secrets.map { KeyedSHA256(key: Array($0.utf8)) }
            validity = jobTimeout + PostbackToken.graceAfterJobTimeout
        }

        var validityMilliseconds: Int64 {
            validity.components.seconds * 1000 + validity.components.attoseconds / 1_000_000_000_000_000
        }
    }

    init(context: RequestEnvelope, submittedAt: Int64) {
        self.context = context
        self.submittedAt = submittedAt
    }

    /// A token of `version` (2 unless a test asks for 1), expiring at ``expiresAt`` if set, else
    /// `submittedAt` plus the keys' validity (version 1 carries no expiry: its verifier adds it).
    func signed(with keys: Keys, version: Int = PostbackToken.currentVersion) -> String {
        var token = self
        token.expiresAt = version == 1 ? nil : expiresAt ?? submittedAt + keys.validityMilliseconds
        let payload = token.payload
        let mac = keys.keys[0].code(version == 1 ? [] : Self.versionTwoDomain, payload)
        // Written in one buffer, made a string once.
        var text: [UInt8] = []
        text.reserveCapacity(
            2 + Base64URL.encodedCount(payload.count) + 1 + Base64URL.encodedCount(SHA256.byteCount))
        if version != 1 { text.append(contentsOf: "2.".utf8) }
        Base64URL.append(payload, to: &text)
        text.append(UInt8(ascii: "."))
        mac.withUnsafeBytes { Base64URL.append($0, to: &text) }
        return String(decoding: text, as: UTF8.self)
    }

    /// Signs with one secret (tests and tools; the bridge keeps its keys made once).
    func signed(with secret: String) -> String { signed(with: Keys(secrets: [secret])) }

    /// Checks the signature against every key (rotation), reads the payload and refuses it past
    /// its expiry. Costs no I/O: the listener calls it before reading a postback's body.
    ///
    /// - Parameter now: Milliseconds since the Unix epoch.
    init(verifying token: Substring, keys: Keys, now: Int64 = WallClock.system.now()) throws(Rejection) {
        // Split on the dots byte by byte: splitting into characters cost more than the HMAC.
        let utf8 = token.utf8
        let dot = UInt8(ascii: ".")
        guard let first = utf8.firstIndex(of: dot) else { throw .malformed }
        let afterFirst = utf8.index(after: first)
        let version: Int
        let encodedPayload: Substring
        let encodedMAC: Substring
        if let second = utf8[afterFirst...].firstIndex(of: dot) {
            let afterSecond = utf8.index(after: second)
            guard token[..<first] == "2", !utf8[afterSecond...].contains(dot) else { throw .malformed }
            (version, encodedPayload, encodedMAC) = (2, token[afterFirst..<second], token[afterSecond...])
        } else {
            (version, encodedPayload, encodedMAC) = (1, token[..<first], token[afterFirst...])
        }
        guard encodedPayload.utf8.count < 16_384, let payload = Base64URL.decode(encodedPayload),
            let mac = Base64URL.decode(encodedMAC), mac.count == SHA256.byteCount
        else { throw .malformed }
        let domain = version == 2 ? Self.versionTwoDomain : []
        let signedByUs = keys.keys.contains { $0.isCode(mac, of: domain, payload) }
        guard signedByUs else { throw .badSignature }
        guard let json = try? JSONValue(parsing: payload), let requestID = json["r"]?.stringValue,
            let submittedAt = json["s"]?.intValue
        else { throw .malformed }
        let expiresAt: Int64
        if version == 2 {
            guard let expiry = json["e"]?.intValue else { throw .malformed }
            expiresAt = Int64(expiry)
        } else {
            expiresAt = Int64(submittedAt) + keys.validityMilliseconds
        }
        guard now <= expiresAt else { throw .expired }
        self.context = RequestEnvelope(
            requestID: requestID, correlationID: json["c"]?.stringValue, replyTo: json["t"]?.stringValue,
            traceparent: json["p"]?.stringValue, tracestate: json["q"]?.stringValue)
        self.submittedAt = Int64(submittedAt)
        self.expiresAt = expiresAt
    }

    /// The job's deadline (milliseconds since the Unix epoch): its expiry less the day a postback
    /// URL outlives it, so that it follows the `JOB_TIMEOUT` of the instance that submitted the job.
    var deadline: Int64? {
        expiresAt.map { $0 - PostbackToken.graceAfterJobTimeout.milliseconds }
    }

    /// Prefixed to the payload under a version 2 MAC, so that no other use of the secret, and no
    /// version 1 token, can be passed off as one.
    private static let versionTwoDomain = Array("blitline-bridge/2.".utf8)

    /// The payload's JSON, written straight into bytes: one for each request submitted.
    private var payload: [UInt8] {
        var json = JSONWriter(reservingCapacity: 256)
        json.beginObject()
        json.member("r", context.requestID)
        if let value = context.correlationID { json.member("c", value) }
        if let value = context.replyTo { json.member("t", value) }
        if let value = context.traceparent { json.member("p", value) }
        if let value = context.tracestate { json.member("q", value) }
        json.member("s", number: Int(submittedAt))
        if let expiresAt { json.member("e", number: Int(expiresAt)) }
        json.endObject()
        return json.bytes
    }
}
