import AMQP

/// A result's event that the events exchange refused, kept in the timeouts queue until the exchange
/// takes it (``EventPublisher/publish(_:holdingIfRefused:confirmed:)``). Blitline sends a result
/// only until its retries run out, about ten and a half minutes: past them a result the bridge did
/// not keep would be lost, and its job timed out.
///
/// The message is the event as it goes to the exchange, with two headers more: the routing key
/// and, when the request's `reply_to` refused the event too, the queue it goes to.
struct HeldEvent: Sendable {
    static let routingKeyHeader = "x-bridge-held-event"
    static let replyToHeader = "x-bridge-held-reply-to"

    /// The headers an event carries (``JobEvent/properties``).
    static let eventHeaders: Set<String> = [BridgeHeader.requestID, BridgeHeader.outcome, "traceparent", "tracestate"]

    let body: [UInt8]
    /// As published to the events exchange, without the two headers.
    let properties: AMQPProperties
    let routingKey: String
    let replyTo: String?

    init(body: [UInt8], properties: AMQPProperties, routingKey: String, replyTo: String?) {
        self.body = body
        self.properties = properties
        self.routingKey = routingKey
        self.replyTo = replyTo
    }

    /// Whether a message of the timeouts queue is a held event rather than a deadline message.
    static func isHeld(_ message: some RequestMessage) -> Bool {
        message.properties.headers?[routingKeyHeader] != nil
    }

    /// The held event in a message of the timeouts queue, or `nil` when its headers are not the
    /// bridge's: a routing key of an event (`job.` and a status) and a queue name that fits.
    init?(_ message: some RequestMessage) {
        guard let headers = message.properties.headers,
            let routingKey = headers[Self.routingKeyHeader]?.stringValue,
            routingKey.hasPrefix("job."), JobEvent.Status(rawValue: String(routingKey.dropFirst(4))) != nil
        else { return nil }
        let replyTo = headers[Self.replyToHeader]?.stringValue
        if let replyTo, RequestEnvelope.short(replyTo) == nil || replyTo.isEmpty { return nil }
        var properties = message.properties
        // An event's own headers only: not the two above, nor any the broker added on the way
        // (`x-delivery-count` of a message handed back).
        properties.headers = AMQPTable(headers.entries.filter { Self.eventHeaders.contains($0.key) })
        properties.expiration = nil
        properties.userID = nil
        self.init(body: message.body, properties: properties, routingKey: routingKey, replyTo: replyTo)
    }

    /// The properties of its message in the timeouts queue.
    var heldProperties: AMQPProperties {
        var held = properties
        var headers = held.headers ?? [:]
        headers[Self.routingKeyHeader] = .string(routingKey)
        if let replyTo { headers[Self.replyToHeader] = .string(replyTo) }
        held.headers = headers
        held.deliveryMode = AMQPProperties.persistent
        return held
    }
}
