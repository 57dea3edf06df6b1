import AMQP
import Foundation

/// What the bridge carries from a request to its event: who asked, and where the answer goes.
package struct RequestEnvelope: Sendable, Hashable {
    /// The longest request id, in bytes of UTF-8: with the suffixes the bridge appends
    /// (`/completed`, `/deadline`, …) it still fits AMQP's 255-byte short strings.
    package static let maxRequestIDBytes = 200
    /// AMQP's short strings (`message_id`, `correlation_id`, `reply_to`) hold at most this many bytes.
    static let maxShortStringBytes = 255

    /// The request's `message_id`, or one generated on arrival (which cannot survive a crash).
    var requestID: String
    var correlationID: String?
    /// Also receives the event (default exchange, routing key = `reply_to`).
    var replyTo: String?
    /// W3C trace context, carried over to the event; only a well-formed one is kept.
    var traceparent: String?
    /// Vendors' trace state that goes with `traceparent`; kept only with it, and only when short
    /// and printable.
    var tracestate: String?

    init(requestID: String, correlationID: String?, replyTo: String?, traceparent: String?, tracestate: String? = nil) {
        self.requestID = requestID
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.traceparent = traceparent.flatMap { Self.isTraceparent($0) ? $0 : nil }
        self.tracestate = self.traceparent == nil ? nil : tracestate.flatMap(Self.validTracestate)
    }

    /// Reads the context of a request message. Nothing here is refused: `problem` says whether
    /// the request can be taken as it is.
    init(_ properties: AMQPProperties) {
        let headers = properties.headers
        // A fresh UUID only when neither names the request (generating one costs a system call).
        let requestID =
            properties.messageID.flatMap { $0.isEmpty ? nil : $0 }
            ?? headers?[BridgeHeader.requestID]?.stringValue.flatMap {
                $0.isEmpty || $0.utf8.count > Self.maxRequestIDBytes ? nil : $0
            } ?? UUID().uuidString.lowercased()
        self.init(
            requestID: requestID,
            correlationID: properties.correlationID, replyTo: properties.replyTo.flatMap { $0.isEmpty ? nil : $0 },
            traceparent: headers?["traceparent"]?.stringValue, tracestate: headers?["tracestate"]?.stringValue)
    }

    /// Why a request with this context cannot be taken, or `nil`.
    var problem: String? {
        let idBytes = requestID.utf8.count
        if idBytes > Self.maxRequestIDBytes {
            return "the request id (message_id) is \(idBytes) bytes of UTF-8; at most \(Self.maxRequestIDBytes) are allowed"
        }
        if let replyTo, replyTo.utf8.count > Self.maxShortStringBytes {
            return "reply_to is not a queue name that AMQP can route to (\(replyTo.utf8.count) bytes after repairing its UTF-8)"
        }
        return nil
    }

    /// `reply_to` when a message can be routed to it.
    var routableReplyTo: String? { Self.short(replyTo) }

    /// `text` when it fits in an AMQP short string, else `nil`.
    static func short(_ text: String?) -> String? {
        text.flatMap { $0.utf8.count <= maxShortStringBytes ? $0 : nil }
    }

    /// The trace id inside `traceparent` (`00-<trace id>-<span id>-<flags>`), for logs.
    var traceID: String? {
        traceparent.map { String($0.dropFirst(3).prefix(32)) }
    }

    /// `text` when it can be a W3C `tracestate`: at most 512 bytes of printable ASCII.
    static func validTracestate(_ text: String) -> String? {
        guard !text.isEmpty, text.utf8.count <= 512, text.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else { return nil }
        return text
    }

    /// W3C trace context version 00: `00-` 32 hex `-` 16 hex `-` 2 hex, lower case, ids not all zero.
    static func isTraceparent(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 55, bytes[0] == UInt8(ascii: "0"), bytes[1] == UInt8(ascii: "0"),
            bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-")
        else { return false }
        func isHex(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
        }
        let traceID = bytes[3..<35]
        let spanID = bytes[36..<52]
        return traceID.allSatisfy(isHex) && spanID.allSatisfy(isHex) && bytes[53...54].allSatisfy(isHex)
            && traceID.contains { $0 != UInt8(ascii: "0") } && spanID.contains { $0 != UInt8(ascii: "0") }
    }
}
