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
    /// Whether a deadline must know of this event: a `late` result settles nothing (its job has its
    /// `timeout` already, or gets it all the same).
    var settlesItsRequest: Bool { !late }

    var properties: AMQPProperties {
        var headers: AMQPTable = [
            BridgeHeader.requestID: .string(context.requestID),
            BridgeHeader.outcome: .string(outcome),
        ]
        if let traceparent = context.traceparent { headers["traceparent"] = .string(traceparent) }
        if let tracestate = context.tracestate { headers["tracestate"] = .string(tracestate) }
        // AMQP's short strings hold 255 bytes: an id or correlation id longer than that (an
        // invalid request's) is carried in the event's JSON only.
        func short(_ text: String?) -> String? {
            text.flatMap { $0.utf8.count <= RequestEnvelope.maxShortStringBytes ? $0 : nil }
        }
        return AMQPProperties(
            contentType: "application/cloudevents+json", headers: headers,
            deliveryMode: AMQPProperties.persistent, correlationID: short(context.correlationID),
            messageID: short(id), timestamp: UInt64(time.timeIntervalSince1970), type: "blitline.job.\(status.rawValue)",
            appID: "blitline-bridge")
    }

    /// The CloudEvents `source` the contract's example shows, and `EVENT_SOURCE`'s default.
    static let defaultSource = "blitline-bridge"

    /// An event with a few images takes 700 – 900 bytes: written in one buffer, not grown into.
    func body(source: String) -> [UInt8] { json(source: source).jsonBytes(reservingCapacity: 1024) }

    var json: JSONValue { json(source: Self.defaultSource) }

    func json(source: String) -> JSONValue {
        func string(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        var data: [JSONValue.Member] = [
            .init(key: "status", value: .string(status.rawValue)),
            .init(key: "request_id", value: .string(context.requestID)),
            .init(key: "correlation_id", value: string(context.correlationID)),
            .init(key: "job_id", value: string(jobID)),
            .init(
                key: "original",
                value: original.map {
                    .object([.init(key: "width", value: .number($0.width)), .init(key: "height", value: .number($0.height))])
                } ?? .null),
            .init(key: "images", value: .array(images.map(Self.imageJSON))),
            .init(key: "errors", value: .array(errors.map(JSONValue.string))),
            .init(key: "failed_image_identifiers", value: .array(failedImageIdentifiers.map(JSONValue.string))),
            .init(key: "completed_via", value: string(completedVia?.rawValue)),
        ]
        if let reason { data.append(.init(key: "reason", value: .string(reason.rawValue))) }
        if late { data.append(.init(key: "late", value: .bool(true))) }
        var event: [JSONValue.Member] = [
            .init(key: "specversion", value: "1.0"),
            .init(key: "type", value: .string("blitline.job.\(status.rawValue)")),
            .init(key: "source", value: .string(source)),
            .init(key: "id", value: .string(id)),
            .init(key: "time", value: .string(Self.timestamp(time))),
            .init(key: "subject", value: .string(context.requestID)),
            .init(key: "datacontenttype", value: "application/json"),
        ]
        // CloudEvents' distributed tracing extension: the same trace context as the headers.
        if let traceparent = context.traceparent { event.append(.init(key: "traceparent", value: .string(traceparent))) }
        if let tracestate = context.tracestate { event.append(.init(key: "tracestate", value: .string(tracestate))) }
        event.append(.init(key: "data", value: .object(data)))
        return .object(event)
    }

    /// Built as members, not as a dictionary literal: the literal's arguments are an array of
    /// their own, copied into the members.
    private static func imageJSON(_ image: ResultImage) -> JSONValue {
        .object([
            .init(key: "image_identifier", value: .string(image.imageIdentifier)),
            .init(key: "url", value: image.url.map(JSONValue.string) ?? .null),
            .init(key: "width", value: image.width.map { .number($0) } ?? .null),
            .init(key: "height", value: image.height.map { .number($0) } ?? .null),
        ])
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-28T23:59:59.123Z`.
    static func timestamp(_ date: Date) -> String {
        Timestamp.text(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
    }
}
