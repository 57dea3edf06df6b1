/// One value in an AMQP field table, with RabbitMQ's field-type letters.
public enum AMQPFieldValue: Sendable, Hashable {
    case bool(Bool)
    case int8(Int8)
    case uint8(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)
    case double(Double)
    /// A decimal: `value` × 10^-`places`.
    case decimal(places: UInt8, value: UInt32)
    /// A UTF-8 long string (`S`): what RabbitMQ expects for string arguments.
    case string(String)
    /// A byte string (`x`).
    case bytes([UInt8])
    /// Seconds since the Unix epoch (`T`).
    case timestamp(UInt64)
    case table(AMQPTable)
    case array([AMQPFieldValue])
    case void
}

/// An AMQP field table: headers, and queue, exchange and consumer arguments. Keys keep their order.
public struct AMQPTable: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence {
    /// The entries in order.
    public private(set) var entries: [(key: String, value: AMQPFieldValue)]

    public init() { entries = [] }

    public init(dictionaryLiteral elements: (String, AMQPFieldValue)...) {
        entries = elements.map { (key: $0.0, value: $0.1) }
    }

    public init(_ entries: [(key: String, value: AMQPFieldValue)]) {
        self.entries = entries
    }

    /// How deep tables and arrays may nest, counting the outermost table as 1. Deeper ones are
    /// refused when publishing, and replaced by `AMQPFieldValue.void` when received (librabbitmq
    /// 0.11 and this module decode them recursively, so the bound keeps the stack bounded).
    public static let maximumDepth = 64

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    /// The value for `key`; setting `nil` removes it, setting a new key appends it.
    public subscript(key: String) -> AMQPFieldValue? {
        get { entries.first { $0.key == key }?.value }
        set {
            if let index = entries.firstIndex(where: { $0.key == key }) {
                if let newValue { entries[index].value = newValue } else { entries.remove(at: index) }
            } else if let newValue {
                entries.append((key: key, value: newValue))
            }
        }
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: AMQPFieldValue)]> {
        entries.makeIterator()
    }

    public static func == (lhs: AMQPTable, rhs: AMQPTable) -> Bool {
        lhs.entries.count == rhs.entries.count
            && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.key)
            hasher.combine(entry.value)
        }
    }
}

extension AMQPFieldValue {
    /// The value as a string, for `string` and UTF-8 `bytes`.
    public var stringValue: String? {
        switch self {
        case .string(let value): return value
        case .bytes(let value): return String(validating: value, as: UTF8.self)
        default: return nil
        }
    }

    /// The value as an integer, for any integer kind that fits.
    public var intValue: Int? {
        switch self {
        case .int8(let v): return Int(v)
        case .uint8(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int64(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .timestamp(let v): return Int(exactly: v)
        default: return nil
        }
    }
}
