import AMQP
import Blitline
import Testing

/// A job request as a producer publishes it, with what its completed event must say.
struct TestRequest: Sendable {
    struct Image: Sendable, Equatable {
        var identifier: String
        var url: String
        var width: Int
        var height: Int
    }

    var id: String
    var body: [UInt8]
    var correlationID: String?
    var replyTo: String?
    var headers: AMQPTable = [:]
    /// The source's size and the images Blitline makes of it, for a valid job.
    var original: (width: Int, height: Int)?
    var images: [Image] = []

    var properties: AMQPProperties {
        AMQPProperties(
            contentType: "application/json", headers: headers.isEmpty ? nil : headers,
            deliveryMode: AMQPProperties.persistent, correlationID: correlationID, replyTo: replyTo, messageID: id)
    }

    var traceparent: String? { headers["traceparent"]?.stringValue }

    /// A valid job: a canvas of 4:3 proportions that grow with `index`, with two `save`s — a
    /// resize_to_fit to 100 pixels wide (100×75) and a 120×80 crop — stored on S3.
    static func thumbnails(
        _ id: String, index: Int = 0, applicationID: String? = nil, version: String? = nil,
        extra: [JSONValue.Member] = []
    ) -> TestRequest {
        let width = 400 + 40 * index
        let height = 300 + 30 * index
        func save(_ name: String) -> JSONValue {
            [
                "image_identifier": .string("\(id)-\(name)"),
                "s3_destination": ["bucket": "thumbs", "key": .string("\(id)/\(name).jpg")],
            ]
        }
        var members: [JSONValue.Member] = []
        if let applicationID { members.append(.init(key: "application_id", value: .string(applicationID))) }
        if let version { members.append(.init(key: "v", value: .number(version))) }
        members += [
            .init(key: "src", value: ["name": "canvas", "width": .number(width), "height": .number(height)]),
            .init(
                key: "functions",
                value: [
                    ["name": "resize_to_fit", "params": ["width": 100], "save": save("thumb")],
                    ["name": "crop", "params": ["x": 10, "y": 10, "width": 120, "height": 80], "save": save("crop")],
                ]),
        ]
        return TestRequest(
            id: id, body: JSONValue.object(members + extra).jsonBytes, original: (width, height),
            images: [
                Image(
                    identifier: "\(id)-thumb", url: "http://s3.amazonaws.com/thumbs/\(id)/thumb.jpg", width: 100,
                    height: 75),
                Image(
                    identifier: "\(id)-crop", url: "http://s3.amazonaws.com/thumbs/\(id)/crop.jpg", width: 120,
                    height: 80),
            ])
    }

    /// The prefix of the ids of barrier sentinels (`BridgeHarness.barrier`), which no test uses for
    /// its own requests.
    static let sentinelPrefix = "barrier-sentinel-"

    /// A request whose body is `text` as it is.
    static func raw(_ id: String, _ body: [UInt8]) -> TestRequest {
        TestRequest(id: id, body: body)
    }

    /// The Blitline result for this job, as a postback body (`{"results": …}`).
    func postbackBody(jobID: String) -> [UInt8] {
        let results: JSONValue = [
            "original_meta": ["width": .number(original?.width ?? 1), "height": .number(original?.height ?? 1)],
            "images": .array(
                images.map {
                    [
                        "image_identifier": .string($0.identifier), "s3_url": .string($0.url),
                        "meta": ["width": .number($0.width), "height": .number($0.height)],
                    ]
                }
            ),
            "job_id": .string(jobID),
        ]
        return JSONValue.object([.init(key: "results", value: results)]).jsonBytes
    }
}

/// Request ids for one test: `{prefix}-{n}`.
func requestIDs(_ prefix: String, _ count: Int) -> [String] {
    (0..<count).map { "\(prefix)-\($0)" }
}
