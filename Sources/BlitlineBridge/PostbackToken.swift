import Blitline
import Crypto

/// The signed last segment of a postback URL. It carries everything the event needs, so any
/// instance can handle any postback without shared state, and an HMAC-SHA256 that proves the
/// bridge made it (Blitline itself signs nothing).
///
/// Form: `base64url(payload JSON) "." base64url(HMAC-SHA256(secret, payload))`.
struct PostbackToken: Sendable, Hashable {
    var context: RequestContext
    /// Milliseconds since the Unix epoch.
    var submittedAt: Int64

    /// Why a token was not accepted.
    enum Rejection: Error, Equatable {
        /// Not a token at all (401).
        case malformed
        /// Well formed, but no secret signed it (403).
        case badSignature
    }

    /// The keys made from `POSTBACK_SECRET`: the first signs, any verifies.
    struct Keys: Sendable {
        let keys: [SymmetricKey]

        init(secrets: [String]) { keys = secrets.map { SymmetricKey(data: Array($0.utf8)) } }
    }

    func signed(with keys: Keys) -> String {
        let payload = payloadJSON.jsonBytes
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: keys.keys[0])
        return Base64URL.encode(payload) + "." + Base64URL.encode(Array(mac))
    }

    /// Signs with one secret (tests and tools; the bridge keeps its keys made once).
    func signed(with secret: String) -> String { signed(with: Keys(secrets: [secret])) }

    /// Checks the signature against every key (rotation) and reads the payload.
    init(verifying token: Substring, keys: Keys) throws(Rejection) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].utf8.count < 16_384, let payload = Base64URL.decode(parts[0]),
            let mac = Base64URL.decode(parts[1]), mac.count == 32
        else { throw .malformed }
        let signedByUs = keys.keys.contains { key in
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key)
        }
        guard signedByUs else { throw .badSignature }
        guard let json = try? JSONValue(parsing: payload), let requestID = json["r"]?.stringValue,
            let submittedAt = json["s"]?.intValue
        else { throw .malformed }
        self.context = RequestContext(
            requestID: requestID, correlationID: json["c"]?.stringValue, replyTo: json["t"]?.stringValue,
            traceparent: json["p"]?.stringValue)
        self.submittedAt = Int64(submittedAt)
    }

    init(context: RequestContext, submittedAt: Int64) {
        self.context = context
        self.submittedAt = submittedAt
    }

    private var payloadJSON: JSONValue {
        var members: [JSONValue.Member] = [.init(key: "r", value: .string(context.requestID))]
        if let value = context.correlationID { members.append(.init(key: "c", value: .string(value))) }
        if let value = context.replyTo { members.append(.init(key: "t", value: .string(value))) }
        if let value = context.traceparent { members.append(.init(key: "p", value: .string(value))) }
        members.append(.init(key: "s", value: .number(String(submittedAt))))
        return .object(members)
    }
}
