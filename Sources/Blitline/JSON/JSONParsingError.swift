/// Why a byte sequence is not acceptable JSON, and where.
public struct JSONParsingError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case unexpectedEnd
        case unexpectedByte
        case invalidNumber
        case invalidString
        case invalidUTF8
        case tooDeep
        case trailingData
    }

    private let code: Code
    /// The byte offset at which parsing stopped.
    public let offset: Int

    private init(_ code: Code, offset: Int) {
        self.code = code
        self.offset = offset
    }

    /// The input ends before the document is complete.
    static func unexpectedEnd(at offset: Int) -> Self { Self(.unexpectedEnd, offset: offset) }
    /// A byte that no JSON value can start or continue with.
    static func unexpectedByte(at offset: Int) -> Self { Self(.unexpectedByte, offset: offset) }
    /// A malformed number.
    static func invalidNumber(at offset: Int) -> Self { Self(.invalidNumber, offset: offset) }
    /// A malformed string: a control character, a bad escape or a lone surrogate.
    static func invalidString(at offset: Int) -> Self { Self(.invalidString, offset: offset) }
    /// Bytes that are not UTF-8.
    static func invalidUTF8(at offset: Int) -> Self { Self(.invalidUTF8, offset: offset) }
    /// Arrays and objects nested deeper than the parser allows.
    static func tooDeep(at offset: Int) -> Self { Self(.tooDeep, offset: offset) }
    /// Something other than whitespace after the document.
    static func trailingData(at offset: Int) -> Self { Self(.trailingData, offset: offset) }

    /// Whether the input is not UTF-8 at all (as opposed to UTF-8 that is not JSON).
    public var isInvalidUTF8: Bool { self.code == .invalidUTF8 }

    /// Whether the input ended before the document was complete (a truncated body).
    public var isUnexpectedEnd: Bool { self.code == .unexpectedEnd }

    public var description: String {
        let what =
            switch self.code {
            case .unexpectedEnd: "the input ends before the JSON document is complete"
            case .unexpectedByte: "unexpected character"
            case .invalidNumber: "malformed number"
            case .invalidString: "malformed string (control character, bad escape or lone surrogate)"
            case .invalidUTF8: "the input is not valid UTF-8"
            case .tooDeep: "arrays and objects are nested more than \(JSONValue.maximumDepth) levels deep"
            case .trailingData: "unexpected data after the JSON document"
            }
        return "\(what) at byte \(self.offset)"
    }
}
