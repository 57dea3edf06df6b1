import Blitline
import Crypto
import Foundation

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

    func signed(with secret: String) -> String {
        let payload = Array(payloadJSON.jsonBytes)
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: SymmetricKey(data: Array(secret.utf8)))
        return Self.base64URL(payload) + "." + Self.base64URL(Array(mac))
    }

    /// Checks the signature against every secret (rotation) and reads the payload.
    init(verifying token: Substring, secrets: [String]) throws(Rejection) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Self.bytes(base64URL: parts[0]),
            let mac = Self.bytes(base64URL: parts[1]), mac.count == 32
        else { throw .malformed }
        let signedByUs = secrets.contains { secret in
            HMAC<SHA256>.isValidAuthenticationCode(
                mac, authenticating: payload, using: SymmetricKey(data: Array(secret.utf8)))
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

    static func base64URL(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        text = text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    static func bytes(base64URL text: Substring) -> [UInt8]? {
        guard text.utf8.count < 16_384 else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }
}
