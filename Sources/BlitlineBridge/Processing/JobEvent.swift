import AMQP
import Blitline
import Foundation

/// One normalized completion or failure event (README, "Event"), as a CloudEvents 1.0 event
/// in structured JSON mode.
struct JobEvent: Sendable {
    enum Status: String, Sendable {
        case completed, failed
    }

    /// Why a failed event failed.
    enum Reason: String, Sendable {
        case invalidRequest = "invalid_request"
        case rejected
        case submitFailed = "submit_failed"
        case processingFailed = "processing_failed"
        case timeout
    }

    /// How the result reached the bridge (`completed_via`).
    enum ResultSource: String, Sendable {
        case postback, poll
    }

    var context: RequestEnvelope
    var status: Status
    var reason: Reason?
    var jobID: String?
    var original: ImageSize?
    var images: [ResultImage] = []
    var errors: [String] = []
    var failedImageIdentifiers: [String] = []
    var completedVia: ResultSource?
    /// A result that came after the job's timeout event.
    var late = false
    var time = Date()

    /// A failure decided by the bridge (the request never produced a result).
    static func failure(
        _ context: RequestEnvelope, reason: Reason, message: String, jobID: String? = nil
    ) -> JobEvent {
        JobEvent(context: context, status: .failed, reason: reason, jobID: jobID, errors: [message])
    }

    /// The event for a result Blitline reported.
    static func result(
        _ result: JobResult, context: RequestEnvelope, via source: ResultSource, late: Bool
    ) -> JobEvent {
        JobEvent(
            context: context, status: result.isCompleted ? .completed : .failed,
            reason: result.isCompleted ? nil : .processingFailed, jobID: result.jobID,
            original: result.original, images: result.images, errors: result.errors,
            failedImageIdentifiers: result.failedImageIdentifiers, completedVia: source, late: late)
    }

    /// Deterministic: a repeated postback or a double submission gives the same id.
    var id: String { "\(context.requestID)/\(late ? "late" : status.rawValue)" }
    var routingKey: String { "job.\(status.rawValue)" }

    /// What the outcome ledger records: `completed`, `failed`, `timeout` or `late`.
    var outcome: String { late ? "late" : reason == .timeout ? "timeout" : status.rawValue }
    /// Whether a deadline must know of this event: the outcome of a job Blitline took (its result,
    /// or its timeout). A `late` result settles nothing (its job has its `timeout` already, or gets
    /// it all the same). Nor does a failure decided before any job: such a request has no deadline,
    /// and the outcome would make its replay from the dead letters look like a copy that came
    /// back after its job was done (``RequestRules/Step/settled``).
    var settlesItsRequest: Bool {
        switch reason {
        case nil, .processingFailed?, .timeout?: !late
        case .invalidRequest?, .rejected?, .submitFailed?: false
        }
    }

    var properties: AMQPProperties {
        var headers: AMQPTable = [
            BridgeHeader.requestID: .string(context.requestID),
            BridgeHeader.outcome: .string(outcome),
        ]
        if let traceparent = context.traceparent { headers["traceparent"] = .string(traceparent) }
        if let tracestate = context.tracestate { headers["tracestate"] = .string(tracestate) }
        // AMQP's short strings hold 255 bytes: an id or correlation id longer than that (an
        // invalid request's) is carried in the event's JSON only.
        let short = RequestEnvelope.short
        return AMQPProperties(
            contentType: "application/cloudevents+json", headers: headers,
            deliveryMode: AMQPProperties.persistent, correlationID: short(context.correlationID),
            messageID: short(id), timestamp: UInt64(time.timeIntervalSince1970), type: "blitline.job.\(status.rawValue)",
            appID: "blitline-bridge")
    }

    /// The CloudEvents `source` the contract's example shows, and `EVENT_SOURCE`'s default.
    static let defaultSource = "blitline-bridge"

    /// The event as published: written straight into one buffer (an event with a few images takes
    /// 700 – 900 bytes), without a tree of values built first.
    func body(source: String) -> [UInt8] {
        var json = JSONWriter(reservingCapacity: 1024)
        json.beginObject()
        json.member("specversion", "1.0")
        json.member("type", "blitline.job.\(status.rawValue)")
        json.member("source", source)
        json.member("id", id)
        json.member("time", Self.timestamp(time))
        json.member("subject", context.requestID)
        json.member("datacontenttype", "application/json")
        // CloudEvents' distributed tracing extension: the same trace context as the headers.
        if let traceparent = context.traceparent { json.member("traceparent", traceparent) }
        if let tracestate = context.tracestate { json.member("tracestate", tracestate) }
        json.key("data")
        json.beginObject()
        json.member("status", status.rawValue)
        json.member("request_id", context.requestID)
        json.member("correlation_id", context.correlationID)
        json.member("job_id", jobID)
        json.key("original")
        if let original {
            json.beginObject()
            json.member("width", number: original.width)
            json.member("height", number: original.height)
            json.endObject()
        } else {
            json.value(.null)
        }
        json.key("images")
        json.beginArray()
        for image in images {
            json.beginObject()
            json.member("image_identifier", image.imageIdentifier)
            json.member("url", image.url)
            json.member("width", number: image.width)
            json.member("height", number: image.height)
            json.endObject()
        }
        json.endArray()
        json.key("errors")
        json.strings(errors)
        json.key("failed_image_identifiers")
        json.strings(failedImageIdentifiers)
        json.member("completed_via", completedVia?.rawValue)
        if let reason { json.member("reason", reason.rawValue) }
        if late {
            json.key("late")
            json.value(.bool(true))
        }
        json.endObject()
        json.endObject()
        return json.bytes
    }

    /// The event's body as a value (`EVENT_SOURCE` at its default), for reading it back.
    var json: JSONValue { json(source: Self.defaultSource) }

    func json(source: String) -> JSONValue {
        // The writer's output is JSON by construction.
        try! JSONValue(parsing: body(source: source))
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-28T23:59:59.123Z`.
    static func timestamp(_ date: Date) -> String {
        Timestamp.text(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
    }
}
