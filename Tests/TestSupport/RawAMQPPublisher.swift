import AMQP
import Foundation

/// A minimal AMQP 0-9-1 publisher that writes its frames by hand, to send what the AMQP module
/// refuses to encode (headers nested thousands of levels deep, short strings that are not UTF-8).
/// Blocking; tests only.
public final class RawAMQPPublisher {
    /// Something the broker said or did that the publisher did not expect.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let fd: Int32
    /// The frame_max the broker offered and this client accepted.
    public private(set) var frameMax = 131_072

    /// Connects and logs in with the URL's credentials, then opens channel 1.
    public init(url: String) throws {
        let configuration = try AMQPConnection.Configuration(url: url)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        try Self.check(getaddrinfo(configuration.host, "\(configuration.port)", &hints, &result) == 0, "cannot resolve the host")
        defer { freeaddrinfo(result) }
        guard let address = result?.pointee else { throw Failure(description: "no address for the host") }
        fd = socket(address.ai_family, address.ai_socktype, address.ai_protocol)
        try Self.check(fd >= 0, "cannot make a socket")
        guard connect(fd, address.ai_addr, address.ai_addrlen) == 0 else {
            Glibc.close(fd)
            throw Failure(description: "cannot connect to the broker")
        }

        try write(Array("AMQP".utf8) + [0, 0, 9, 1])
        _ = try expectMethod(10, 10)  // connection.start
        var startOK = Self.method(10, 11)
        startOK += [0, 0, 0, 0]  // empty client properties
        startOK += Self.shortString("PLAIN")
        startOK += Self.longString([0] + Array(configuration.username.utf8) + [0] + Array(configuration.password.utf8))
        startOK += Self.shortString("en_US")
        try writeFrame(type: 1, channel: 0, startOK)
        let tune = try expectMethod(10, 30)
        frameMax = Int(tune[6]) << 24 | Int(tune[7]) << 16 | Int(tune[8]) << 8 | Int(tune[9])
        try writeFrame(type: 1, channel: 0, Self.method(10, 31) + Array(tune[4..<6]) + Array(tune[6..<10]) + [0, 0])
        try writeFrame(
            type: 1, channel: 0, Self.method(10, 40) + Self.shortString(configuration.virtualHost) + Self.shortString("") + [0])
        _ = try expectMethod(10, 41)
        try writeFrame(type: 1, channel: 1, Self.method(20, 10) + Self.shortString(""))
        _ = try expectMethod(20, 11)
    }

    deinit { Glibc.close(fd) }

    /// Publishes on the default exchange with `headers` (an encoded field table, size included)
    /// as the only property.
    public func publish(routingKey: String, headers: [UInt8], body: [UInt8]) throws {
        try publish(routingKey: routingKey, headers: headers, persistent: false, correlationID: nil, messageID: nil, body: body)
    }

    /// Publishes on the default exchange with the properties given: `headers` an encoded field
    /// table (size included), `correlationID` and `messageID` the bytes of their short strings,
    /// whatever those are.
    public func publish(
        routingKey: String, headers: [UInt8]? = nil, persistent: Bool = true, correlationID: [UInt8]?,
        messageID: [UInt8]?, body: [UInt8]
    ) throws {
        try writeFrame(
            type: 1, channel: 1, Self.method(60, 40) + [0, 0] + Self.shortString("") + Self.shortString(routingKey) + [0])
        var flags: UInt16 = 0
        var properties: [UInt8] = []
        if let headers {
            flags |= 0x2000
            properties += headers
        }
        if persistent {
            flags |= 0x1000
            properties.append(2)
        }
        if let correlationID {
            flags |= 0x0400
            properties += Self.shortString(correlationID)
        }
        if let messageID {
            flags |= 0x0080
            properties += Self.shortString(messageID)
        }
        var header: [UInt8] = [0, 60, 0, 0]
        header += Self.bigEndian(UInt64(body.count), bytes: 8)
        header += Self.bigEndian(UInt64(flags), bytes: 2)
        header += properties
        try Self.check(header.count <= frameMax - 8, "the header frame is larger than frame_max")
        try writeFrame(type: 2, channel: 1, header)
        try writeFrame(type: 3, channel: 1, body)
    }

    /// Closes the connection and waits for close-ok, so that everything published before has
    /// been taken by the broker.
    public func close() throws {
        try writeFrame(type: 1, channel: 0, Self.method(10, 50) + [0, 200] + Self.shortString("bye") + [0, 0, 0, 0])
        _ = try expectMethod(10, 51)
    }

    // MARK: Encoding

    /// A headers table `{"deep": …}` whose value nests `levels` arrays (`A`) or tables (`F`, each
    /// holding the next under an empty key), the innermost empty. Built iteratively: the whole
    /// point is a depth no recursive encoder survives.
    public static func deeplyNestedHeaders(kind: Character, levels: Int) -> [UInt8] {
        let perLevel = kind == "A" ? 5 : 6
        var value: [UInt8] = []
        value.reserveCapacity(levels * perLevel)
        for level in 0..<levels {
            let remaining = levels - level - 1
            if kind == "A" {
                value += [UInt8(ascii: "A")] + bigEndian(UInt64(5 * remaining), bytes: 4)
            } else {
                value += [UInt8(ascii: "F")] + bigEndian(UInt64(remaining == 0 ? 0 : 6 * remaining), bytes: 4)
                if remaining > 0 { value.append(0) }  // the empty key of the next level
            }
        }
        let entry = shortString("deep") + value
        return bigEndian(UInt64(entry.count), bytes: 4) + entry
    }

    /// The most levels of `kind` whose headers still fit in a content header frame.
    public static func deepestNesting(kind: Character, frameMax: Int) -> Int {
        // Frame payload: 14 bytes before the table, 4 + 5 for the table size and the key "deep".
        let room = frameMax - 8 - 14 - 9
        return kind == "A" ? room / 5 : (room + 1) / 6
    }

    private static func method(_ classID: UInt16, _ methodID: UInt16) -> [UInt8] {
        bigEndian(UInt64(classID), bytes: 2) + bigEndian(UInt64(methodID), bytes: 2)
    }

    private static func shortString(_ text: String) -> [UInt8] { shortString(Array(text.utf8)) }

    private static func shortString(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count)] + bytes }

    private static func longString(_ bytes: [UInt8]) -> [UInt8] { bigEndian(UInt64(bytes.count), bytes: 4) + bytes }

    public static func bigEndian(_ value: UInt64, bytes: Int) -> [UInt8] {
        (0..<bytes).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    // MARK: I/O

    private func writeFrame(type: UInt8, channel: UInt16, _ payload: [UInt8]) throws {
        try write([type] + Self.bigEndian(UInt64(channel), bytes: 2) + Self.bigEndian(UInt64(payload.count), bytes: 4) + payload + [0xCE])
    }

    private func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            try Self.check(count > 0, "the broker closed the connection")
            sent += count
        }
    }

    private func read(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var received = 0
        while received < count {
            let n = bytes[received...].withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            try Self.check(n > 0, "the broker closed the connection")
            received += n
        }
        return bytes
    }

    /// Reads frames up to the method `classID.methodID` and returns its payload; fails on any other
    /// method (the broker closing the channel or connection says why in it).
    private func expectMethod(_ classID: UInt16, _ methodID: UInt16) throws -> [UInt8] {
        while true {
            let header = try read(7)
            let size = Int(header[3]) << 24 | Int(header[4]) << 16 | Int(header[5]) << 8 | Int(header[6])
            let payload = try read(size + 1)
            guard header[0] == 1 else { continue }  // heartbeats, content
            let expected = Self.method(classID, methodID)
            try Self.check(
                Array(payload[0..<4]) == expected,
                "expected method \(classID).\(methodID), got \(payload[0..<4].map { $0 }): \(String(decoding: payload.dropFirst(4).prefix(200), as: UTF8.self))"
            )
            return Array(payload.dropLast())
        }
    }

    private static func check(_ condition: Bool, _ what: @autoclosure () -> String) throws {
        guard condition else { throw Failure(description: what()) }
    }
}
