import NIOCore
import NIOHTTP1

/// Reads HTTP/1.0 and HTTP/1.1 requests from a connection's bytes for the ``HTTPListener``: each
/// head in one piece once it has come in full, then its body as it comes, by `Content-Length` or
/// chunked. It keeps only what the listener acts on (method, path, version, whether the connection
/// stays open, the body's declared length and type, whether the client waits for a 100 Continue)
/// and builds no list of headers: a job takes about 5 % less of the bridge's CPU than with
/// SwiftNIO's request decoder (deploy/BENCHMARKS.md, "A request parser of the listener's own").
///
/// Strict wherever a request could be read two ways (RFC 9112, sections 2.2, 5, 6 and 11): lines
/// end in CRLF; a header line is a token, a colon and a value, so no folded lines and no space
/// before the colon; one `Content-Length` of digits only, never with `Transfer-Encoding`, whose
/// one coding must be `chunked`. Empty lines before a request line are skipped. What it cannot read
/// is a ``Failure`` carrying the answer's status; the listener closes the connection after it.
struct HTTPRequestParser {
    /// What the listener reads from a request head.
    struct Head {
        enum Method { case get, head, post, other }

        var method: Method
        /// The request target up to its query, as sent.
        var path: String
        var version: HTTPVersion
        /// Whether the client keeps the connection open after the answer: HTTP/1.1 unless it says
        /// `Connection: close`, HTTP/1.0 only if it says `Connection: keep-alive`.
        var keepAlive: Bool
        /// The declared length of the body; `nil` for a chunked body.
        var contentLength: Int?
        var contentType: String?
        /// The client sent `Expect: 100-continue` and may wait for a `100 Continue` before it
        /// sends the body (RFC 9110, section 10.1.1); only HTTP/1.1 clients may.
        var expectsContinue = false
    }

    enum Part {
        case head(Head)
        /// The next bytes of the body, chunked framing removed.
        case body(ByteBuffer)
        /// The request is complete; the next bytes are the next request's.
        case end
    }

    /// Why a request cannot be read, and the status to answer it with.
    struct Failure: Error, Equatable {
        var status: HTTPResponseStatus
        var reason: String

        static func malformed(_ what: String) -> Failure { Failure(status: .badRequest, reason: "malformed \(what)") }
    }

    /// A request head, up to and including its empty line, is at most this long (answered 431),
    /// as are the trailers of a chunked body.
    static let maxHeadBytes = 80 * 1024
    /// A head has at most this many header fields (answered 431).
    static let maxHeaderFields = 1000
    /// A chunk's size line, extensions included, is at most this long.
    static let maxChunkLineBytes = 4 * 1024

    private enum State {
        /// The first `searched` bytes of the head hold no end of it.
        case head(searched: Int)
        case body(remaining: Int)
        case chunkSize
        case chunk(remaining: Int)
        case chunkEnd
        case trailers(read: Int)
    }

    private var state = State.head(searched: 0)

    /// The next part of a request that `bytes` holds, taken from its front; `nil` until more
    /// bytes come. After a failure the connection must be closed: the parser does not resync.
    mutating func next(from bytes: inout ByteBuffer) throws -> Part? {
        while true {
            switch state {
            case .head(let searched):
                return try readHead(from: &bytes, searched: searched).map(Part.head)
            case .body(let remaining):
                if remaining == 0 {
                    state = .head(searched: 0)
                    return .end
                }
                guard bytes.readableBytes > 0 else { return nil }
                let count = min(remaining, bytes.readableBytes)
                state = .body(remaining: remaining - count)
                return .body(bytes.readSlice(length: count)!)
            case .chunkSize:
                guard let length = try Self.lineLength(in: bytes, limit: Self.maxChunkLineBytes, what: "chunk size") else {
                    return nil
                }
                let size = try bytes.withUnsafeReadableBytes { line in
                    try Self.chunkSize(UnsafeRawBufferPointer(rebasing: line[..<length]))
                }
                bytes.moveReaderIndex(forwardBy: length + 2)
                state = size == 0 ? .trailers(read: 0) : .chunk(remaining: size)
            case .chunk(let remaining):
                guard bytes.readableBytes > 0 else { return nil }
                let count = min(remaining, bytes.readableBytes)
                state = count == remaining ? .chunkEnd : .chunk(remaining: remaining - count)
                return .body(bytes.readSlice(length: count)!)
            case .chunkEnd:
                guard bytes.readableBytes >= 2 else { return nil }
                guard bytes.readInteger(as: UInt16.self) == Self.crlf else {
                    throw Failure.malformed("chunk: no CRLF after its data")
                }
                state = .chunkSize
            case .trailers(let read):
                // Trailer fields are read past, never used.
                guard let length = try Self.lineLength(in: bytes, limit: Self.maxHeadBytes - read, what: "trailer") else {
                    return nil
                }
                bytes.moveReaderIndex(forwardBy: length + 2)
                if length == 0 {
                    state = .head(searched: 0)
                    return .end
                }
                state = .trailers(read: read + length + 2)
            }
        }
    }

    // MARK: The head

    private mutating func readHead(from bytes: inout ByteBuffer, searched: Int) throws -> Head? {
        if searched == 0 {
            while bytes.getInteger(at: bytes.readerIndex, as: UInt16.self) == Self.crlf {
                bytes.moveReaderIndex(forwardBy: 2)
            }
            // A lone CR may be the start of another empty line.
            if bytes.readableBytes < 2 { return nil }
        }
        let end = try bytes.withUnsafeReadableBytes { head -> Int? in
            // Every LF must end a CRLF; the first CRLF CRLF ends the head.
            for index in searched..<head.count where head[index] == Self.lf {
                guard index > 0, head[index - 1] == Self.cr else { throw Failure.malformed("head: a line ends without CR") }
                if index >= 3, head[index - 2] == Self.lf, head[index - 3] == Self.cr { return index + 1 }
            }
            return nil
        }
        guard let end else {
            guard bytes.readableBytes <= Self.maxHeadBytes else { throw Self.headTooLarge }
            state = .head(searched: bytes.readableBytes)
            return nil
        }
        guard end <= Self.maxHeadBytes else { throw Self.headTooLarge }
        let (head, framing) = try bytes.withUnsafeReadableBytes { head in
            try Self.parseHead(UnsafeRawBufferPointer(rebasing: head[..<end]))
        }
        bytes.moveReaderIndex(forwardBy: end)
        state = framing
        return head
    }

    /// Reads a whole head, which ends in its empty line (so every scan below stops at a CR).
    private static func parseHead(_ head: UnsafeRawBufferPointer) throws -> (Head, State) {
        var at = 0
        while isTokenByte(head[at]) { at += 1 }
        let method: Head.Method = switch UnsafeRawBufferPointer(rebasing: head[..<at]) {
        case let name where name.elementsEqual("POST".utf8): .post
        case let name where name.elementsEqual("GET".utf8): .get
        case let name where name.elementsEqual("HEAD".utf8): .head
        default: .other
        }
        guard at > 0, head[at] == space else { throw Failure.malformed("request line") }
        at += 1
        let targetStart = at
        var query: Int?
        while head[at] > space, head[at] < 0x7F {
            if head[at] == UInt8(ascii: "?"), query == nil { query = at }
            at += 1
        }
        guard at > targetStart, head[at] == space else { throw Failure.malformed("request target") }
        let path = String(decoding: UnsafeRawBufferPointer(rebasing: head[targetStart..<(query ?? at)]), as: UTF8.self)
        at += 1
        let version = try self.version(UnsafeRawBufferPointer(rebasing: head[at..<min(at + 10, head.count)]))
        at += 10

        var fields = 0
        var contentLength: Int?
        var chunked = false
        var close = false
        var keepAlive = false
        var contentType: String?
        var expectsContinue = false
        while head[at] != cr {
            fields += 1
            guard fields <= maxHeaderFields else {
                throw Failure(status: .requestHeaderFieldsTooLarge, reason: "more than \(maxHeaderFields) header fields")
            }
            let nameStart = at
            while isTokenByte(head[at]) { at += 1 }
            guard at > nameStart, head[at] == UInt8(ascii: ":") else { throw Failure.malformed("header field") }
            let name = UnsafeRawBufferPointer(rebasing: head[nameStart..<at])
            at += 1
            while head[at] == space || head[at] == tab { at += 1 }
            let valueStart = at
            var valueEnd = at
            while head[at] != cr {
                let byte = head[at]
                guard byte == tab || (byte >= space && byte != 0x7F) else { throw Failure.malformed("header value") }
                if byte != space, byte != tab { valueEnd = at + 1 }
                at += 1
            }
            guard head[at + 1] == lf else { throw Failure.malformed("header line ending") }
            at += 2
            let value = UnsafeRawBufferPointer(rebasing: head[valueStart..<valueEnd])
            if equalsIgnoringCase(name, "content-length") {
                guard contentLength == nil, (1...18).contains(value.count), value.allSatisfy(isDigit) else {
                    throw Failure.malformed("Content-Length")
                }
                contentLength = value.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            } else if equalsIgnoringCase(name, "transfer-encoding") {
                guard !chunked else { throw Failure.malformed("Transfer-Encoding: given twice") }
                guard equalsIgnoringCase(value, "chunked") else {
                    throw Failure(status: .notImplemented, reason: "transfer coding not supported: only chunked is")
                }
                chunked = true
            } else if equalsIgnoringCase(name, "connection") {
                forEachListMember(of: value) { option in
                    if equalsIgnoringCase(option, "close") { close = true }
                    if equalsIgnoringCase(option, "keep-alive") { keepAlive = true }
                }
            } else if equalsIgnoringCase(name, "expect") {
                // Other expectations are ignored, as RFC 9110 allows: the request is answered.
                forEachListMember(of: value) { if equalsIgnoringCase($0, "100-continue") { expectsContinue = true } }
            } else if contentType == nil, equalsIgnoringCase(name, "content-type") {
                contentType = String(decoding: value, as: UTF8.self)
            }
        }
        guard !(chunked && contentLength != nil) else {
            throw Failure.malformed("framing: Content-Length with Transfer-Encoding")
        }
        let parsed = Head(
            method: method, path: path, version: version,
            keepAlive: !close && (version.minor == 1 || keepAlive),
            contentLength: contentLength, contentType: contentType,
            expectsContinue: expectsContinue && version.minor == 1)
        return (parsed, chunked ? .chunkSize : .body(remaining: contentLength ?? 0))
    }

    /// `HTTP/1.0` or `HTTP/1.1` and the line's CRLF; another version is answered 505.
    private static func version(_ text: UnsafeRawBufferPointer) throws -> HTTPVersion {
        guard text.count == 10, text.starts(with: "HTTP/".utf8), isDigit(text[5]), text[6] == UInt8(ascii: "."),
            isDigit(text[7]), text[8] == cr, text[9] == lf
        else { throw Failure.malformed("request line: no HTTP version") }
        guard text[5] == UInt8(ascii: "1"), text[7] <= UInt8(ascii: "1") else {
            throw Failure(status: .httpVersionNotSupported, reason: "HTTP/1.0 and HTTP/1.1 only")
        }
        return HTTPVersion(major: 1, minor: Int(text[7] - UInt8(ascii: "0")))
    }

    // MARK: Chunks

    /// The size of a chunk from its size line: hexadecimal digits, then optionally extensions
    /// after a `;`, which are read past.
    private static func chunkSize(_ line: UnsafeRawBufferPointer) throws -> Int {
        var size = 0
        var at = 0
        while at < line.count, let digit = hexValue(line[at]) {
            guard at < 15 else { throw Failure.malformed("chunk size: too many digits") }
            size = size << 4 | digit
            at += 1
        }
        guard at > 0 else { throw Failure.malformed("chunk size") }
        guard at < line.count else { return size }
        while at < line.count, line[at] == space || line[at] == tab { at += 1 }
        guard at < line.count, line[at] == UInt8(ascii: ";") else { throw Failure.malformed("chunk size") }
        guard line[at...].allSatisfy({ $0 == tab || ($0 >= space && $0 != 0x7F) }) else {
            throw Failure.malformed("chunk extension")
        }
        return size
    }

    /// The length of the line at the front of `bytes`, without its CRLF; `nil` while its end has
    /// not come. Throws past `limit` bytes or for a CR or LF that is not part of a CRLF.
    private static func lineLength(in bytes: ByteBuffer, limit: Int, what: String) throws -> Int? {
        let found = bytes.withUnsafeReadableBytes { line -> Int? in
            line.firstIndex { $0 == cr || $0 == lf }
        }
        guard let found else {
            guard bytes.readableBytes <= limit else { throw Failure.malformed("\(what): line too long") }
            return nil
        }
        guard found <= limit else { throw Failure.malformed("\(what): line too long") }
        guard let next = bytes.getInteger(at: bytes.readerIndex + found + 1, as: UInt8.self) else { return nil }
        guard bytes.getInteger(at: bytes.readerIndex + found, as: UInt8.self) == cr, next == lf else {
            throw Failure.malformed("\(what): line ending")
        }
        return found
    }

    // MARK: Bytes

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")
    /// CR LF read as one big-endian integer.
    private static let crlf = UInt16(cr) << 8 | UInt16(lf)
    private static let headTooLarge = Failure(
        status: .requestHeaderFieldsTooLarge, reason: "request head larger than \(maxHeadBytes) bytes")

    /// RFC 9110's `tchar`: what method and header names are made of.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "!"), UInt8(ascii: "#")...UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"),
            UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// Calls `body` with each member of a comma-separated list, without the spaces and tabs
    /// around it.
    private static func forEachListMember(of list: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        while start <= list.count {
            let end = list[start...].firstIndex(of: UInt8(ascii: ",")) ?? list.count
            var first = start
            var last = end
            while first < last, list[first] == space || list[first] == tab { first += 1 }
            while last > first, list[last - 1] == space || list[last - 1] == tab { last -= 1 }
            body(UnsafeRawBufferPointer(rebasing: list[first..<last]))
            start = end + 1
        }
    }

    /// Whether two bytes are the same ASCII character, letters compared without case.
    private static func sameIgnoringCase(_ byte: UInt8, _ lowercase: UInt8) -> Bool {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 == lowercase : byte == lowercase
    }

    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        let lowercase = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        return bytes.count == lowercase.count && zip(bytes, lowercase).allSatisfy(sameIgnoringCase)
    }
}
