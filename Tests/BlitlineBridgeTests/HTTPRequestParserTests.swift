import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BlitlineBridge

/// The listener's request parser read against SwiftNIO's HTTP/1 decoder (llhttp), which the
/// listener used before: the same requests, cut at every byte, read the same; and what either
/// could read two ways is refused.
@Suite struct HTTPRequestParserTests {
    /// A request as the listener acts on it.
    struct Reading: Equatable, CustomStringConvertible {
        var method: String
        var path: String
        var minorVersion: Int
        var keepAlive: Bool
        var contentLength: Int?
        var contentType: String?
        var expectsContinue: Bool
        var body: [UInt8]

        var description: String {
            "\(method) \(path) 1.\(minorVersion) keepAlive=\(keepAlive) length=\(contentLength.map(String.init) ?? "-") "
                + "type=\(contentType ?? "-") continue=\(expectsContinue) "
                + "body=\(String(decoding: body, as: UTF8.self).debugDescription)"
        }
    }

    static let valid: [String] = [
        "GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n",
        "GET /metrics?x=1&y=2 HTTP/1.1\r\nhost: bridge\r\nAccept: */*\r\n\r\n",
        "HEAD /readyz HTTP/1.0\r\n\r\n",
        "GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nConnection: TE, close\r\n\r\n",
        "\r\n\r\nGET /healthz HTTP/1.1\r\nHost:bridge\r\n\r\n",
        "POST /postback/2.abc_DEF-123 HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"a\":[1,2,3]} ",
        "POST /blitline/postback/t?attempt=2 HTTP/1.1\r\ncontent-length:   2  \r\nCONTENT-TYPE: \tapplication/json; charset=utf-8\t\r\n\r\n{}",
        "POST /postback/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
            + "5\r\n{\"a\":\r\n3;name=value\r\n[1]\r\nA\r\n,\"b\":\"xyz\"\r\n1\r\n}\r\n0\r\nExpires: never\r\n\r\n",
        "POST /postback/t HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n",
        "POST /postback/t HTTP/1.1\r\nX-Bytes: caf\u{e9}\r\nContent-Length: 0\r\n\r\n",
        "DELETE /postback/t HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "POST /postback/t HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        "POST /postback/t HTTP/1.1\r\nexpect: x-other ,100-Continue\r\nContent-Length: 2\r\n\r\n{}",
        "POST /postback/t HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    ]

    /// Each request, whole and cut into two at every byte, reads as SwiftNIO's decoder reads it.
    @Test(arguments: valid)
    func readsAsSwiftNIOsDecoderDoes(_ request: String) throws {
        let bytes = Array(request.utf8)
        let expected = try Self.readWithSwiftNIO([bytes])
        #expect(expected.count == 1)
        for cut in 0...bytes.count {
            let pieces = [Array(bytes[..<cut]), Array(bytes[cut...])]
            #expect(try Self.read(pieces) == expected, "cut at \(cut): \(expected)")
        }
    }

    /// Requests sent together, however the bytes arrive, are read in turn (those that keep
    /// their connection open, as SwiftNIO reads nothing after the others).
    @Test func requestsSentTogetherAreReadInTurn() throws {
        let together = try Self.valid.filter { try Self.readWithSwiftNIO([Array($0.utf8)]).first?.keepAlive == true }
        let bytes = Array(together.joined().utf8)
        let expected = try Self.readWithSwiftNIO([bytes])
        #expect(together.count >= 8)
        #expect(expected.count == together.count)
        #expect(try Self.read([bytes]) == expected)
        #expect(try Self.read(bytes.map { [$0] }) == expected)
        for size in [2, 7, 64] {
            let pieces = stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
            #expect(try Self.read(pieces) == expected, "in pieces of \(size) bytes")
        }
    }

    /// Requests the parser refuses, with the status it answers. SwiftNIO's decoder refused them
    /// too, but for those marked `stricter`, which RFC 9112 lets a server refuse (a single space
    /// between the parts of a request line, section 3; a chunk size no body here could have) and
    /// the 501, which llhttp read as a body in gzip that it did not unzip.
    static let refused: [(request: String, status: HTTPResponseStatus, stricter: Bool)] = [
        // Could be read two ways: the smuggling cases of RFC 9112, section 11.2.
        ("POST /postback/t HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n{}", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nContent-Length : 2\r\n\r\n{}", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nX: a\r\n Content-Length: 2\r\n\r\n{}", .badRequest, false),
        ("POST /postback/t HTTP/1.1\nContent-Length: 2\n\n{}", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nContent-Length: 2\rX: y\r\n\r\n{}", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", .notImplemented, true),
        ("POST /postback/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx0\r\n\r\n", .badRequest, false),
        ("POST /postback/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", .badRequest, true),
        // Not a request line.
        ("\u{1}\u{2} / HTTP/1.1\r\n\r\n", .badRequest, false),
        ("GET /healthz\r\n\r\n", .badRequest, false),
        ("GET  /healthz HTTP/1.1\r\n\r\n", .badRequest, true),
        ("GET /health z HTTP/1.1\r\n\r\n", .badRequest, false),
        ("GET /healthz HTTP/1.1\r\nHost bridge\r\n\r\n", .badRequest, false),
        ("GET /healthz HTTP/1.1\r\nX: a\u{1}b\r\n\r\n", .badRequest, false),
        ("GET /healthz HTTP/2.0\r\n\r\n", .httpVersionNotSupported, false),
        ("GET /healthz HTTP/1.1\r\n" + String(repeating: "X-Field: value\r\n", count: 1001) + "\r\n", .requestHeaderFieldsTooLarge, false),
        ("GET /healthz HTTP/1.1\r\nX-Long: " + String(repeating: "a", count: 80 * 1024) + "\r\n\r\n", .requestHeaderFieldsTooLarge, false),
    ]

    /// What could be read two ways, or not at all, is refused with the status the listener
    /// answers, whole or byte by byte; SwiftNIO's decoder refused (or, with 501, misread) the same.
    @Test(arguments: refused)
    func ambiguousAndMalformedRequestsAreRefused(_ request: String, _ status: HTTPResponseStatus, _ stricter: Bool) throws {
        let bytes = Array(request.utf8)
        for pieces in [[bytes], bytes.map { [$0] }] {
            let failure = #expect(throws: HTTPRequestParser.Failure.self) { try Self.read(pieces) }
            #expect(failure?.status == status, "\(failure?.reason ?? "read")")
        }
        if !stricter {
            let reading = (try? Self.readWithSwiftNIO([bytes])).map { "\($0)" } ?? ""
            #expect(throws: (any Error).self, "SwiftNIO read \(request.debugDescription) as \(reading)") {
                try Self.readWithSwiftNIO([bytes])
            }
        }
    }

    /// A head still coming is not read past its limit before it ends: a client cannot make the
    /// parser hold more than the limit of an unended head.
    @Test func aHeadThatNeverEndsIsRefusedAtItsLimit() throws {
        var parser = HTTPRequestParser()
        var buffer = ByteBuffer(string: "GET /healthz HTTP/1.1\r\n")
        #expect(try parser.next(from: &buffer) == nil)
        let field = ByteBuffer(string: "X-Field: " + String(repeating: "a", count: 1000) + "\r\n")
        var accepted = buffer.readableBytes
        let refused = #expect(throws: HTTPRequestParser.Failure.self) {
            // 200 fields of a kilobyte: well past the limit, so a parser that never refuses fails.
            for _ in 0..<200 {
                var more = field
                buffer.writeBuffer(&more)
                _ = try parser.next(from: &buffer)
                accepted = buffer.readableBytes
            }
        }
        #expect(refused?.status == .requestHeaderFieldsTooLarge)
        #expect(accepted <= HTTPRequestParser.maxHeadBytes)
    }

    // MARK: Reading

    /// The requests in `pieces`, given to the parser one piece at a time.
    static func read(_ pieces: [[UInt8]]) throws -> [Reading] {
        var parser = HTTPRequestParser()
        var unread = ByteBuffer()
        var readings: [Reading] = []
        for piece in pieces {
            unread.writeBytes(piece)
            while let part = try parser.next(from: &unread) {
                switch part {
                case .head(let head):
                    readings.append(Reading(
                        method: head.method.name, path: head.path, minorVersion: head.version.minor,
                        keepAlive: head.keepAlive, contentLength: head.contentLength, contentType: head.contentType,
                        expectsContinue: head.expectsContinue, body: []))
                case .body(let bytes):
                    readings[readings.count - 1].body += bytes.readableBytesView
                case .end:
                    break
                }
            }
        }
        return readings
    }

    /// The same with SwiftNIO's decoder, as the listener configured it before.
    static func readWithSwiftNIO(_ pieces: [[UInt8]]) throws -> [Reading] {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldCount = 1000
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(limitConfiguration: limits)))
        var readings: [Reading] = []
        for piece in pieces {
            try channel.writeInbound(ByteBuffer(bytes: piece))
            while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
                switch part {
                case .head(let head):
                    let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
                    // llhttp leaves the spaces after a value, which are not part of it (RFC 9110, 5.5).
                    let value = { (name: String) in
                        head.headers.first(name: name).map { String($0.reversed().drop { $0 == " " || $0 == "\t" }.reversed()) }
                    }
                    readings.append(Reading(
                        method: ["GET", "HEAD", "POST"].contains(head.method.rawValue) ? head.method.rawValue : "other",
                        path: String(path), minorVersion: head.version.minor, keepAlive: head.isKeepAlive,
                        contentLength: value("content-length").flatMap { Int($0) }, contentType: value("content-type"),
                        // An HTTP/1.0 client's expectation is ignored (RFC 9110, 10.1.1).
                        expectsContinue: head.version.minor == 1
                            && head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" },
                        body: []))
                case .body(let bytes):
                    readings[readings.count - 1].body += bytes.readableBytesView
                case .end:
                    break
                }
            }
        }
        return readings
    }
}

extension HTTPRequestParser.Head.Method {
    /// The methods the listener tells apart, by name; any other is `other`.
    fileprivate var name: String {
        switch self {
        case .get: "GET"
        case .head: "HEAD"
        case .post: "POST"
        case .other: "other"
        }
    }
}
