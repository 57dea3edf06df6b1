import AMQP
import Testing

@testable import BlitlineBridge

/// A held event (README, "Delivery guarantees") read back from the timeouts queue: the event as it
/// goes to the exchange, and only headers of the bridge's own shape believed.
@Suite struct HeldEventTests {
    typealias Message = RequestProcessorTests.Message

    let event = AMQPProperties(
        contentType: "application/cloudevents+json",
        headers: [BridgeHeader.requestID: .string("r1"), BridgeHeader.outcome: .string("completed")],
        messageID: "r1")

    @Test func comesBackAsItWasHeldWithoutItsOwnHeaders() throws {
        let held = HeldEvent(body: Array("{}".utf8), properties: event, routingKey: "job.completed", replyTo: "replies")
        var properties = held.heldProperties
        properties.headers?["x-delivery-count"] = .int64(3)  // the broker's, on a message handed back
        let message = Message(held.body, properties: properties)
        #expect(HeldEvent.isHeld(message))
        let read = try #require(HeldEvent(message))
        #expect(read.body == held.body)
        #expect(read.routingKey == "job.completed")
        #expect(read.replyTo == "replies")
        #expect(read.properties.headers?.entries.map(\.key) == [BridgeHeader.requestID, BridgeHeader.outcome])
        #expect(read.properties.messageID == "r1")
        #expect(message.properties.deliveryMode == AMQPProperties.persistent)
    }

    @Test func aDeadlineMessageIsNotHeld() {
        #expect(!HeldEvent.isHeld(Message(Array("[]".utf8), properties: AMQPProperties(messageID: "r1/deadline"))))
    }

    /// Anyone who may publish to the timeouts queue could write the headers: a routing key that is
    /// not an event's, or a reply queue that cannot be one, makes no held event.
    @Test func headersNotOfTheBridgesShapeAreNotBelieved() {
        for (routingKey, replyTo): (AMQPFieldValue, AMQPFieldValue?) in [
            (.string("job.#"), nil), (.string("audit.everything"), nil), (.int64(1), nil),
            (.string("job.failed"), .string("")), (.string("job.failed"), .string(String(repeating: "q", count: 256))),
        ] {
            var headers: AMQPTable = [HeldEvent.routingKeyHeader: routingKey]
            if let replyTo { headers[HeldEvent.replyToHeader] = replyTo }
            let message = Message(Array("{}".utf8), properties: AMQPProperties(headers: headers))
            #expect(HeldEvent.isHeld(message))
            #expect(HeldEvent(message) == nil, "\(routingKey), \(String(describing: replyTo))")
        }
    }
}
