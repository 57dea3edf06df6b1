import Blitline
import Logging
import Synchronization
import Testing

@testable import BlitlineBridge

/// Collects what a handler writes.
private final class Lines: Sendable {
    private let lines = Mutex<[[UInt8]]>([])
    func append(_ line: [UInt8]) { lines.withLock { $0.append(line) } }
    var all: [[UInt8]] { lines.withLock { $0 } }
}

@Suite struct JSONLogHandlerTests {
    private func logger(level: Logger.Level = .info) -> (Logger, Lines) {
        let lines = Lines()
        let handler = JSONLogHandler(
            label: "test", level: level, metadataProvider: nil, sink: .init { lines.append($0) })
        return (Logger(label: "test", factory: { _ in handler }), lines)
    }

    @Test func eachEntryIsOneLineOfJSONWithItsMetadata() throws {
        var (logger, lines) = logger()
        logger[metadataKey: "request_id"] = "order-1"
        logger.info(
            "submitted \"quoted\" \u{1}\n ü",
            metadata: ["job_id": "4hT9xQ2LrPz0aB1cD2eF3gH", "trace_id": "0af7651916cd43dd8448eb211c80319c"])
        let line = try #require(lines.all.first)
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(!line.dropLast().contains(UInt8(ascii: "\n")), "one entry, one line")
        let json = try JSONValue(parsing: line)
        #expect(json["level"]?.stringValue == "info")
        #expect(json["label"]?.stringValue == "test")
        #expect(json["message"]?.stringValue == "submitted \"quoted\" \u{1}\n ü")
        #expect(json["request_id"]?.stringValue == "order-1")
        #expect(json["job_id"]?.stringValue == "4hT9xQ2LrPz0aB1cD2eF3gH")
        #expect(json["trace_id"]?.stringValue == "0af7651916cd43dd8448eb211c80319c")
        let time = try #require(json["time"]?.stringValue)
        #expect(time.count == 24 && time.hasSuffix("Z"), "RFC 3339 UTC with milliseconds: \(time)")
    }

    @Test func entriesBelowTheLevelAreNotWritten() {
        let (logger, lines) = logger(level: .warning)
        logger.info("quiet")
        logger.warning("loud")
        #expect(lines.all.count == 1)
    }

    @Test func metadataThatClashesWithAFieldKeepsTheField() throws {
        let (logger, lines) = logger()
        logger.info("the message", metadata: ["message": "not the message", "level": "nope"])
        let json = try JSONValue(parsing: try #require(lines.all.first))
        #expect(json["message"]?.stringValue == "the message")
        #expect(json["metadata.message"]?.stringValue == "not the message")
        #expect(json["level"]?.stringValue == "info")
    }

    @Test func keysSetOneByOneAreTheLoggersOwnAndTheLatestValueWins() throws {
        var (request, lines) = logger()
        request[metadataKey: "request_id"] = "order-1"
        var postback = request
        postback[metadataKey: "job_id"] = "first"
        postback[metadataKey: "job_id"] = "second"
        postback[metadataKey: "request_id"] = nil
        request[metadataKey: "trace_id"] = "trace-1"
        postback.info("postback")
        request.info("request")
        let (postbackLine, requestLine) = (try JSONValue(parsing: lines.all[0]), try JSONValue(parsing: lines.all[1]))
        #expect(postbackLine["job_id"]?.stringValue == "second")
        #expect(postbackLine["request_id"] == nil, "a key set to nil is gone")
        #expect(postbackLine["trace_id"] == nil, "a key set on another copy of the logger is not this one's")
        #expect(requestLine["request_id"]?.stringValue == "order-1")
        #expect(requestLine["job_id"] == nil)
        #expect(postback[metadataKey: "job_id"] == "second")
        #expect(postback.handler.metadata == ["job_id": "second"])
    }

    @Test func aKeySetOverAndOverKeepsOneValue() throws {
        var (logger, lines) = logger()
        for attempt in 1...100 {
            logger[metadataKey: "attempt"] = "\(attempt)"
            logger[metadataKey: "attempt-\(attempt % 3)"] = "\(attempt)"
        }
        logger.info("done")
        let json = try JSONValue(parsing: try #require(lines.all.first))
        #expect(json["attempt"]?.stringValue == "100")
        #expect(json["attempt-1"]?.stringValue == "100")
        #expect(json["attempt-0"]?.stringValue == "99")
        #expect(logger.handler.metadata.count == 4)
        logger.handler.metadata = ["only": "this"]
        #expect(logger[metadataKey: "attempt"] == nil)
        #expect(logger.handler.metadata == ["only": "this"])
    }
}

/// Event times and log lines share one RFC 3339 form: UTC, milliseconds, rounded down.
@Suite struct TimestampTests {
    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"), (1_764_370_799_123, "2025-11-28T22:59:59.123Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ])
    func millisecondsSinceTheEpoch(milliseconds: Int64, text: String) {
        #expect(Timestamp.text(millisecondsSinceEpoch: milliseconds) == text)
    }

    @Test func nowHasTheSameForm() {
        let now = Timestamp.now
        #expect(now.utf8.count == 24 && now.hasSuffix("Z") && now.dropFirst(10).hasPrefix("T"), "\(now)")
    }
}
