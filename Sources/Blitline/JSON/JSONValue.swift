/// A JSON value that keeps a document exactly as its author wrote it.
///
/// Numbers keep their original lexeme (`1.220` stays `1.220`, `12345678901234567890` is never
/// rounded through a `Double`) and objects keep their key order and any duplicate keys, so a job
/// parsed and serialized again reaches Blitline with the same meaning byte for byte, apart from
/// insignificant whitespace.
public enum JSONValue: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, as its JSON lexeme (for example `"1.22"`, `"-3e5"`).
    case number(String)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object, its members in document order.
    case object([Member])

    /// One member of a JSON object.
    public struct Member: Sendable, Hashable {
        /// The member's key.
        public var key: String
        /// The member's value.
        public var value: JSONValue

        /// Creates a member.
        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }
}

extension JSONValue {
    /// The value of the first member named `key` when this is an object; `nil` otherwise.
    ///
    /// Setting a value replaces the first member with that key in place, or appends a new member;
    /// setting `nil` removes every member with that key. Setting on a non-object does nothing.
    public subscript(key: String) -> JSONValue? {
        get {
            guard case .object(let members) = self else { return nil }
            return members.first(where: { $0.key == key })?.value
        }
        set {
            guard case .object(var members) = self else { return }
            self = .null  // drops the reference so that `members` is mutated without a copy
            if let newValue {
                if let index = members.firstIndex(where: { $0.key == key }) {
                    members[index].value = newValue
                } else {
                    members.append(Member(key: key, value: newValue))
                }
            } else {
                members.removeAll(where: { $0.key == key })
            }
            self = .object(members)
        }
    }

    /// The element at `index` when this is an array and the index is in range; `nil` otherwise.
    public subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }

    /// The string when this is a string.
    public var stringValue: String? {
        if case .string(let string) = self { return string }
        return nil
    }

    /// The Boolean when this is `true` or `false`.
    public var boolValue: Bool? {
        if case .bool(let bool) = self { return bool }
        return nil
    }

    /// The number as a `Double` when this is a number.
    public var doubleValue: Double? {
        if case .number(let lexeme) = self { return Double(lexeme) }
        return nil
    }

    /// The number as an `Int` when this is a number with an integral value that fits an `Int`
    /// (`800`, `800.0` and `8e2` all give 800).
    public var intValue: Int? {
        guard case .number(let lexeme) = self else { return nil }
        if let int = Int(lexeme) { return int }
        guard let double = Double(lexeme), double.rounded() == double,
            double >= -9.007_199_254_740_992e15, double <= 9.007_199_254_740_992e15
        else { return nil }
        return Int(double)
    }

    /// The elements when this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The members, in document order, when this is an object.
    public var objectMembers: [Member]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// Whether this is `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Whether this is an object.
    public var isObject: Bool {
        if case .object = self { return true }
        return false
    }

    /// A short name of this value's kind for messages: `"an object"`, `"a string"`, ….
    public var kindDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
