extension JSONValue {
    /// How deeply arrays and objects may nest before parsing fails.
    public static let maximumDepth = 256

    /// Parses one JSON document (RFC 8259), surrounded by optional whitespace.
    ///
    /// Never traps on any input: malformed, truncated or non-UTF-8 bytes and documents nested
    /// deeper than ``maximumDepth`` throw a ``JSONParsingError``.
    public init(parsing bytes: some Collection<UInt8>) throws(JSONParsingError) {
        let result: Result<JSONValue, JSONParsingError> =
            bytes.withContiguousStorageIfAvailable { buffer in
                Result { () throws(JSONParsingError) in try JSONValue.parseDocument(buffer) }
            }
            ?? Array(bytes).withUnsafeBufferPointer { buffer in
                Result { () throws(JSONParsingError) in try JSONValue.parseDocument(buffer) }
            }
        self = try result.get()
    }

    /// Parses one JSON document from text.
    public init(parsing string: String) throws(JSONParsingError) {
        try self.init(parsing: Array(string.utf8))
    }

    private static func parseDocument(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParsingError) -> JSONValue {
        var parser = JSONParser(bytes: buffer)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.isAtEnd else { throw .trailingData(at: parser.offset) }
        return value
    }
}

/// A recursive-descent JSON parser over a byte buffer; depth-limited so that hostile input cannot
/// exhaust the stack.
struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private(set) var offset = 0
    /// The members and elements of the objects and arrays being parsed, innermost last: each is
    /// moved out once, at its final size, rather than grown an allocation at a time, and the
    /// stacks keep their storage from one object or array to the next (``moveOut(_:from:vacant:)``).
    private var members: [JSONValue.Member] = []
    private var elements: [JSONValue] = []
    /// What each stack reserves when first used: a postback's or a job's objects rarely hold more.
    private static let initialStackCapacity = 16

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { self.offset >= self.bytes.count }

    mutating func skipWhitespace() {
        while self.offset < self.bytes.count {
            switch self.bytes[self.offset] {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): self.offset += 1
            default: return
            }
        }
    }

    private func peek() throws(JSONParsingError) -> UInt8 {
        guard self.offset < self.bytes.count else { throw .unexpectedEnd(at: self.offset) }
        return self.bytes[self.offset]
    }

    mutating func parseValue(depth: Int) throws(JSONParsingError) -> JSONValue {
        switch try self.peek() {
        case UInt8(ascii: "{"): return try self.parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try self.parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"): try self.expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try self.expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try self.expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try self.parseNumber())
        default: throw .unexpectedByte(at: self.offset)
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParsingError) {
        let count = literal.utf8CodeUnitCount
        for index in 0..<count {
            let expected = literal.utf8Start[index]
            guard self.offset < self.bytes.count else { throw .unexpectedEnd(at: self.offset) }
            guard self.bytes[self.offset] == expected else { throw .unexpectedByte(at: self.offset) }
            self.offset += 1
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParsingError) -> JSONValue {
        guard depth <= JSONValue.maximumDepth else { throw .tooDeep(at: self.offset) }
        self.offset += 1
        self.skipWhitespace()
        if try self.peek() == UInt8(ascii: "}") {
            self.offset += 1
            return .object([])
        }
        if members.capacity == 0 { members.reserveCapacity(Self.initialStackCapacity) }
        let base = members.count
        while true {
            self.skipWhitespace()
            guard try self.peek() == UInt8(ascii: "\"") else { throw .unexpectedByte(at: self.offset) }
            let key = try self.parseString()
            self.skipWhitespace()
            guard try self.peek() == UInt8(ascii: ":") else { throw .unexpectedByte(at: self.offset) }
            self.offset += 1
            self.skipWhitespace()
            let value = try self.parseValue(depth: depth)
            members.append(JSONValue.Member(key: key, value: value))
            self.skipWhitespace()
            switch try self.peek() {
            case UInt8(ascii: ","): self.offset += 1
            case UInt8(ascii: "}"):
                self.offset += 1
                return .object(Self.moveOut(&members, from: base, vacant: Self.vacantMember))
            default: throw .unexpectedByte(at: self.offset)
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParsingError) -> JSONValue {
        guard depth <= JSONValue.maximumDepth else { throw .tooDeep(at: self.offset) }
        self.offset += 1
        self.skipWhitespace()
        if try self.peek() == UInt8(ascii: "]") {
            self.offset += 1
            return .array([])
        }
        if elements.capacity == 0 { elements.reserveCapacity(Self.initialStackCapacity) }
        let base = elements.count
        while true {
            self.skipWhitespace()
            let element = try self.parseValue(depth: depth)
            elements.append(element)
            self.skipWhitespace()
            switch try self.peek() {
            case UInt8(ascii: ","): self.offset += 1
            case UInt8(ascii: "]"):
                self.offset += 1
                return .array(Self.moveOut(&elements, from: base, vacant: .null))
            default: throw .unexpectedByte(at: self.offset)
            }
        }
    }

    /// Takes the top of a stack, from `base` on, into an array of its own, at its size.
    ///
    /// The elements are moved, not copied: a copy would retain each string, array and object
    /// once more and the stack release it again. The slots they leave hold `vacant`, which owns
    /// no storage, until the stack drops them. (`Array(stack[base...])` would also share the
    /// stack's storage when the object is all the stack holds, and the stack would then allocate
    /// afresh and grow again from nothing for the next object or array.)
    ///
    /// The new array starts as `count` vacant slots: `Array(repeatElement(_:count:))` allocates
    /// in code specialized here, where `Array(unsafeUninitializedCapacity:)` calls the standard
    /// library's unspecialized allocation, which looks up the array's storage class in the
    /// runtime's metadata cache on every call (1.1 % of the bridge's CPU; deploy/BENCHMARKS.md,
    /// "Fewer look-ups of type metadata").
    private static func moveOut<Element>(_ stack: inout [Element], from base: Int, vacant: Element) -> [Element] {
        let count = stack.count - base
        var top = Array(repeatElement(vacant, count: count))
        stack.withUnsafeMutableBufferPointer { stack in
            let source = stack.baseAddress! + base
            top.withUnsafeMutableBufferPointer { top in
                // Vacant slots own nothing: overwriting them releases nothing.
                top.baseAddress!.moveUpdate(from: source, count: count)
            }
            source.initialize(repeating: vacant, count: count)
        }
        stack.removeSubrange(base...)
        return top
    }

    /// What a member's slot on the stack holds once the member is moved out: no storage to release.
    private static let vacantMember = JSONValue.Member(key: "", value: .null)

    private mutating func parseNumber() throws(JSONParsingError) -> String {
        let start = self.offset
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        func digits(_ parser: inout JSONParser) -> Int {
            let first = parser.offset
            while parser.offset < parser.bytes.count, isDigit(parser.bytes[parser.offset]) { parser.offset += 1 }
            return parser.offset - first
        }
        if self.bytes[self.offset] == UInt8(ascii: "-") { self.offset += 1 }
        guard self.offset < self.bytes.count else { throw .unexpectedEnd(at: self.offset) }
        if self.bytes[self.offset] == UInt8(ascii: "0") {
            self.offset += 1
        } else if digits(&self) == 0 {
            throw .invalidNumber(at: self.offset)
        }
        if self.offset < self.bytes.count, self.bytes[self.offset] == UInt8(ascii: ".") {
            self.offset += 1
            guard digits(&self) > 0 else {
                throw self.isAtEnd ? .unexpectedEnd(at: self.offset) : .invalidNumber(at: self.offset)
            }
        }
        if self.offset < self.bytes.count, self.bytes[self.offset] | 0x20 == UInt8(ascii: "e") {
            self.offset += 1
            if self.offset < self.bytes.count,
                self.bytes[self.offset] == UInt8(ascii: "+") || self.bytes[self.offset] == UInt8(ascii: "-")
            {
                self.offset += 1
            }
            guard digits(&self) > 0 else {
                throw self.isAtEnd ? .unexpectedEnd(at: self.offset) : .invalidNumber(at: self.offset)
            }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<self.offset]), as: UTF8.self)
    }

    private mutating func parseString() throws(JSONParsingError) -> String {
        self.offset += 1
        let start = self.offset
        var needsUnescaping = false
        var isASCII = true
        while true {
            guard self.offset < self.bytes.count else { throw .unexpectedEnd(at: self.offset) }
            let byte = self.bytes[self.offset]
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { throw .invalidString(at: self.offset) }
            isASCII = isASCII && byte < 0x80
            if byte == UInt8(ascii: "\\") {
                needsUnescaping = true
                self.offset += 2
            } else {
                self.offset += 1
            }
        }
        let raw = UnsafeBufferPointer(rebasing: self.bytes[start..<self.offset])
        self.offset += 1
        if !needsUnescaping {
            // ASCII is valid UTF-8 as it stands: the decoding initializer then copies it without
            // the generic validating one's cost (most strings of a job or a result are ASCII).
            if isASCII { return String(decoding: raw, as: UTF8.self) }
            guard let string = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(at: start) }
            return string
        }
        return try Self.unescape(raw, startingAt: start)
    }

    private static func unescape(_ raw: UnsafeBufferPointer<UInt8>, startingAt base: Int) throws(JSONParsingError) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(raw.count)
        var index = 0
        func hex4(_ at: Int) throws(JSONParsingError) -> UInt32 {
            guard at + 4 <= raw.count else { throw .invalidString(at: base + at) }
            var value: UInt32 = 0
            for byte in raw[at..<at + 4] {
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw .invalidString(at: base + at)
                }
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        while index < raw.count {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                output.append(byte)
                index += 1
                continue
            }
            guard index + 1 < raw.count else { throw .invalidString(at: base + index) }
            let escaped = raw[index + 1]
            index += 2
            switch escaped {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(escaped)
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0C)
            case UInt8(ascii: "n"): output.append(0x0A)
            case UInt8(ascii: "r"): output.append(0x0D)
            case UInt8(ascii: "t"): output.append(0x09)
            case UInt8(ascii: "u"):
                var scalarValue = try hex4(index)
                index += 4
                if (0xD800...0xDBFF).contains(scalarValue) {
                    guard index + 6 <= raw.count, raw[index] == UInt8(ascii: "\\"), raw[index + 1] == UInt8(ascii: "u")
                    else { throw .invalidString(at: base + index) }
                    let low = try hex4(index + 2)
                    guard (0xDC00...0xDFFF).contains(low) else { throw .invalidString(at: base + index) }
                    scalarValue = 0x10000 + ((scalarValue - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                }
                guard let scalar = Unicode.Scalar(scalarValue) else { throw .invalidString(at: base + index) }
                output.append(contentsOf: UTF8.encode(scalar)!)
            default:
                throw .invalidString(at: base + index - 1)
            }
        }
        guard let string = String(validating: output, as: UTF8.self) else { throw .invalidUTF8(at: base) }
        return string
    }
}
