import AMQP
import Foundation

/// What the bridge carries from a request to its event: who asked, and where the answer goes.
struct RequestContext: Sendable, Hashable {
    /// The request's `message_id`, or one generated on arrival (which cannot survive a crash).
    var requestID: String
    var correlationID: String?
    /// Also receives the event (default exchange, routing key = `reply_to`).
    var replyTo: String?
    /// W3C trace context, carried over to the event.
    var traceparent: String?

    /// Header the bridge adds to messages it moves (retries, dead letters) so that a generated
    /// request id survives them.
    static let requestIDHeader = "x-bridge-request-id"

    init(requestID: String, correlationID: String?, replyTo: String?, traceparent: String?) {
        self.requestID = requestID
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.traceparent = traceparent
    }

    /// Reads the context of a request message.
    init(_ properties: AMQPProperties) {
        let headers = properties.headers
        self.requestID =
            properties.messageID.flatMap { $0.isEmpty ? nil : $0 }
            ?? headers?[Self.requestIDHeader]?.stringValue
            ?? UUID().uuidString.lowercased()
        self.correlationID = properties.correlationID
        self.replyTo = properties.replyTo.flatMap { $0.isEmpty ? nil : $0 }
        self.traceparent = headers?["traceparent"]?.stringValue
    }

    /// The trace id inside `traceparent` (`00-<trace id>-<span id>-<flags>`), for logs.
    var traceID: String? {
        guard let traceparent else { return nil }
        let parts = traceparent.split(separator: "-")
        return parts.count >= 4 && parts[1].count == 32 ? String(parts[1]) : nil
    }
}
