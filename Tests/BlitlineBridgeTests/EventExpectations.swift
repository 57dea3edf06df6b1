import AMQP
import Blitline
import Foundation
import Testing

/// The keys README's "Event" says every event's `data` always carries.
let alwaysPresentDataKeys = [
    "status", "request_id", "correlation_id", "job_id", "original", "images", "errors",
    "failed_image_identifiers", "completed_via",
]

/// Checks the CloudEvents envelope and message properties every event shares (README, "Event").
func expectEnvelope(
    _ event: ReceivedEvent, of request: TestRequest, status: String, id: String? = nil, published: ClosedRange<Date>,
    source: String = "blitline-bridge", sourceLocation: SourceLocation = #_sourceLocation
) {
    let expectedID = id ?? "\(request.id)/\(status)"
    guard let json = event.json else {
        Issue.record(
            "event is not JSON: \(String(decoding: event.body, as: UTF8.self))", sourceLocation: sourceLocation)
        return
    }
    #expect(json["specversion"]?.stringValue == "1.0", sourceLocation: sourceLocation)
    #expect(json["type"]?.stringValue == "blitline.job.\(status)", sourceLocation: sourceLocation)
    #expect(json["source"]?.stringValue == source, sourceLocation: sourceLocation)
    let violations = EventSchema.violations(of: json)
    #expect(violations.isEmpty, "the event does not follow deploy/schema/event.schema.json: \(violations)", sourceLocation: sourceLocation)
    #expect(json["id"]?.stringValue == expectedID, sourceLocation: sourceLocation)
    #expect(json["subject"]?.stringValue == request.id, sourceLocation: sourceLocation)
    #expect(json["datacontenttype"]?.stringValue == "application/json", sourceLocation: sourceLocation)
    let time = json["time"]?.stringValue ?? ""
    let parsed = parseEventTime(time)
    #expect(
        time.count == 24 && time.hasSuffix("Z") && parsed.map { published.contains($0) } == true,
        "time \(time) is not RFC 3339 UTC with milliseconds within \(published)", sourceLocation: sourceLocation)

    #expect(event.routingKey == "job.\(status)", sourceLocation: sourceLocation)
    #expect(event.properties.contentType == "application/cloudevents+json", sourceLocation: sourceLocation)
    #expect(event.properties.messageID == expectedID, sourceLocation: sourceLocation)
    #expect(event.properties.correlationID == request.correlationID, sourceLocation: sourceLocation)
    #expect(event.properties.deliveryMode == AMQPProperties.persistent, sourceLocation: sourceLocation)
    #expect(
        event.properties.headers?["traceparent"]?.stringValue == request.traceparent, sourceLocation: sourceLocation)

    let data = json["data"]
    for key in alwaysPresentDataKeys {
        #expect(data?[key] != nil, "data.\(key) is missing", sourceLocation: sourceLocation)
    }
    #expect(data?["status"]?.stringValue == status, sourceLocation: sourceLocation)
    #expect(data?["request_id"]?.stringValue == request.id, sourceLocation: sourceLocation)
    #expect(
        data?["correlation_id"] == request.correlationID.map(JSONValue.string) ?? .null, sourceLocation: sourceLocation)
}

/// Checks a completed event against the job's expected images.
func expectCompleted(
    _ event: ReceivedEvent, of request: TestRequest, via channel: String = "postback", published: ClosedRange<Date>,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectEnvelope(event, of: request, status: "completed", published: published, sourceLocation: sourceLocation)
    let data = event.data
    #expect(data?["job_id"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
    if let original = request.original {
        #expect(data?["original"]?["width"]?.intValue == original.width, sourceLocation: sourceLocation)
        #expect(data?["original"]?["height"]?.intValue == original.height, sourceLocation: sourceLocation)
    }
    let images = (data?["images"]?.arrayValue ?? []).map { image in
        TestRequest.Image(
            identifier: image["image_identifier"]?.stringValue ?? "", url: image["url"]?.stringValue ?? "",
            width: image["width"]?.intValue ?? -1, height: image["height"]?.intValue ?? -1)
    }
    #expect(images == request.images, sourceLocation: sourceLocation)
    #expect(data?["errors"] == [], sourceLocation: sourceLocation)
    #expect(data?["failed_image_identifiers"] == [], sourceLocation: sourceLocation)
    #expect(data?["completed_via"]?.stringValue == channel, sourceLocation: sourceLocation)
    #expect(data?["reason"] == nil, sourceLocation: sourceLocation)
    #expect(data?["late"] == nil, sourceLocation: sourceLocation)
}

/// Checks a failed event for a request that never reached Blitline (or was refused by it).
func expectFailedBeforeBlitline(
    _ event: ReceivedEvent, of request: TestRequest, reason: String, published: ClosedRange<Date>,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectEnvelope(event, of: request, status: "failed", published: published, sourceLocation: sourceLocation)
    let data = event.data
    #expect(data?["reason"]?.stringValue == reason, sourceLocation: sourceLocation)
    #expect(data?["job_id"] == .null, sourceLocation: sourceLocation)
    #expect(data?["original"] == .null, sourceLocation: sourceLocation)
    #expect(data?["images"] == [], sourceLocation: sourceLocation)
    #expect(data?["completed_via"] == .null, sourceLocation: sourceLocation)
    #expect(event.errors.count == 1 && event.errors.first?.isEmpty == false, sourceLocation: sourceLocation)
}

/// Checks a dead-lettered request: as it was published, plus `x-bridge-error` naming `reason`, or,
/// without a reason, dead-lettered by the jobs queue itself (the bridge rejected it).
func expectDeadLettered(
    _ message: AMQPDelivery?, as request: TestRequest, reason: String?, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let message else {
        Issue.record("request \(request.id) is not in the dead-letter queue", sourceLocation: sourceLocation)
        return
    }
    #expect(message.body == request.body, sourceLocation: sourceLocation)
    #expect(message.properties.messageID == request.id, sourceLocation: sourceLocation)
    #expect(message.properties.correlationID == request.correlationID, sourceLocation: sourceLocation)
    for (key, value) in request.headers {
        #expect(message.properties.headers?[key] == value, "header \(key) was not kept", sourceLocation: sourceLocation)
    }
    guard let reason else {
        let death = message.properties.headers?["x-first-death-reason"]?.stringValue
        #expect(death == "rejected", "x-first-death-reason is \(death ?? "absent")", sourceLocation: sourceLocation)
        return
    }
    let error = message.properties.headers?["x-bridge-error"]?.stringValue ?? ""
    #expect(error.hasPrefix(reason), "x-bridge-error is \"\(error)\"", sourceLocation: sourceLocation)
}

/// Parses an event's `time`.
func parseEventTime(_ text: String) -> Date? {
    let format = ISO8601DateFormatter()
    format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return format.date(from: text)
}

/// From a second before `start` to a second after now: when an event published in between
/// may say it was.
func window(since start: Date) -> ClosedRange<Date> {
    start.addingTimeInterval(-1)...Date().addingTimeInterval(1)
}
