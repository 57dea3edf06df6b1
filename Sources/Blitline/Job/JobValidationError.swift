/// Why a request cannot become a Blitline job, in words a user can act on.
public struct JobValidationError: Error, Hashable, CustomStringConvertible {
    /// The kind of problem, for code that needs to tell them apart.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Code: String, Hashable, Sendable {
            case tooLarge = "too_large"
            case notJSON = "not_json"
            case notAnObject = "not_an_object"
            case missingSource = "missing_src"
            case missingFunctions = "missing_functions"
            case postbackURLPresent = "postback_url_present"
            case missingApplicationID = "missing_application_id"
        }

        private let code: Code

        /// The body is larger than allowed.
        public static let tooLarge = Kind(code: .tooLarge)
        /// The body is not UTF-8 JSON.
        public static let notJSON = Kind(code: .notJSON)
        /// The body is JSON but not an object.
        public static let notAnObject = Kind(code: .notAnObject)
        /// `src` is missing or of the wrong type.
        public static let missingSource = Kind(code: .missingSource)
        /// `functions` is missing, empty, or holds something other than function objects.
        public static let missingFunctions = Kind(code: .missingFunctions)
        /// The job carries a `postback_url`, which the bridge owns.
        public static let postbackURLPresent = Kind(code: .postbackURLPresent)
        /// Neither the job nor the configuration gives an application id.
        public static let missingApplicationID = Kind(code: .missingApplicationID)

        /// A stable snake_case name, e.g. `missing_src`.
        public var description: String { self.code.rawValue }
    }

    /// The kind of problem.
    public let kind: Kind
    /// What is wrong and what was expected, naming the field; never contains the application id.
    public let message: String

    init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { self.message }
}
