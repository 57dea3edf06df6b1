/// Compact JSON text written straight into bytes, for documents whose shape the code knows (the
/// bridge's events): no tree of ``JSONValue``s is built to be written and thrown away.
///
/// Calls follow the document: `beginObject()`, then `key(_:)` and a value for each member, then
/// `endObject()`; in an array, values one after another. The writer puts the commas in; it does
/// not check that the calls make a document.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// Whether the next key or value is the first of its container (or the value of a key just
    /// written), so that no comma goes before it.
    private var first = true

    public init(reservingCapacity capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func beginObject() { open(UInt8(ascii: "{")) }
    public mutating func endObject() { close(UInt8(ascii: "}")) }
    public mutating func beginArray() { open(UInt8(ascii: "[")) }
    public mutating func endArray() { close(UInt8(ascii: "]")) }

    /// A member's key; its value follows.
    public mutating func key(_ key: String) {
        separate()
        JSONValue.writeString(key, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        first = true
    }

    /// A string, or `null`.
    public mutating func string(_ value: String?) {
        separate()
        if let value { JSONValue.writeString(value, to: &bytes) } else { bytes.append(contentsOf: "null".utf8) }
        first = false
    }

    /// A number, or `null`.
    public mutating func number(_ value: Int?) {
        guard let value else { return self.value(.null) }
        separate()
        bytes.append(contentsOf: String(value).utf8)
        first = false
    }

    /// An array of strings.
    public mutating func strings(_ values: [String]) {
        beginArray()
        for value in values { string(value) }
        endArray()
    }

    /// Any value, written as ``JSONValue/write(to:)`` writes it.
    public mutating func value(_ value: JSONValue) {
        separate()
        value.write(to: &bytes)
        first = false
    }

    /// `"key": value` for the common kinds.
    public mutating func member(_ key: String, _ value: String?) {
        self.key(key)
        string(value)
    }

    public mutating func member(_ key: String, number value: Int?) {
        self.key(key)
        number(value)
    }

    private mutating func separate() {
        if !first { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func open(_ bracket: UInt8) {
        separate()
        bytes.append(bracket)
        first = true
    }

    private mutating func close(_ bracket: UInt8) {
        bytes.append(bracket)
        first = false
    }
}
