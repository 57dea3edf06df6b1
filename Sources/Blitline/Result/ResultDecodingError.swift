/// Why a body is not a Blitline result document.
public struct ResultDecodingError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case emptyBody
        case notJSON
        case missingResults
        case missingJobID
    }

    private let code: Code
    private let detail: String

    private init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    /// The body is empty.
    public static let emptyBody = Self(.emptyBody, "the body is empty")
    /// The body (or the `results` text inside it) is not JSON.
    public static let notJSON = Self(.notJSON, "the body is not JSON")
    /// Neither a `results` member nor a form field `results` holds a result object.
    public static let missingResults = Self(.missingResults, "no `results` object")
    /// The result has no `job_id`.
    public static let missingJobID = Self(.missingJobID, "the result has no `job_id`")

    static func notJSON(_ error: JSONParsingError) -> Self { Self(.notJSON, "the body is not JSON: \(error)") }

    /// Equal when of the same kind, whatever the detail.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    public var description: String { "not a Blitline result: \(self.detail)" }
}
