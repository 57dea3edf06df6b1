import CRabbitMQ

extension AMQPTable {
    /// Encodes the table into C structures that live in `arena`.
    func cTable(in arena: CArena) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_empty_table }
        let cEntries = arena.allocate(amqp_table_entry_t.self, count: entries.count)
        for (index, entry) in entries.enumerated() {
            cEntries[index] = amqp_table_entry_t(
                key: arena.bytes(entry.key), value: entry.value.cValue(in: arena))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: cEntries)
    }

    /// Copies a table out of library memory; `depth` is the table's own (the outermost is 1).
    /// Tables and arrays nested deeper than `maximumDepth` become `.void`.
    init(_ table: amqp_table_t, depth: Int = 1) {
        self.init()
        guard table.num_entries > 0, let cEntries = table.entries else { return }
        var entries: [(key: String, value: AMQPFieldValue)] = []
        entries.reserveCapacity(Int(table.num_entries))
        for index in 0..<Int(table.num_entries) {
            let entry = cEntries[index]
            entries.append((key: String(amqpBytes: entry.key), value: AMQPFieldValue(entry.value, depth: depth)))
        }
        self.init(entries)
    }
}

extension AMQPFieldValue {
    func cValue(in arena: CArena) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        func set(_ kind: Unicode.Scalar) { field.kind = UInt8(ascii: kind) }
        switch self {
        case .bool(let v): set("t"); field.value.boolean = v ? 1 : 0
        case .int8(let v): set("b"); field.value.i8 = v
        case .uint8(let v): set("B"); field.value.u8 = v
        case .int16(let v): set("s"); field.value.i16 = v
        case .uint16(let v): set("u"); field.value.u16 = v
        case .int32(let v): set("I"); field.value.i32 = v
        case .uint32(let v): set("i"); field.value.u32 = v
        case .int64(let v): set("l"); field.value.i64 = v
        case .uint64(let v): set("L"); field.value.u64 = v
        case .float(let v): set("f"); field.value.f32 = v
        case .double(let v): set("d"); field.value.f64 = v
        case .decimal(let places, let v):
            set("D"); field.value.decimal = amqp_decimal_t(decimals: places, value: v)
        case .string(let v): set("S"); field.value.bytes = arena.bytes(v)
        case .bytes(let v):
            set("x"); field.value.bytes = v.withUnsafeBytes { arena.bytes($0) }
        case .timestamp(let v): set("T"); field.value.u64 = v
        case .table(let v): set("F"); field.value.table = v.cTable(in: arena)
        case .array(let values):
            set("A")
            let cValues = arena.allocate(amqp_field_value_t.self, count: max(values.count, 1))
            for (index, value) in values.enumerated() { cValues[index] = value.cValue(in: arena) }
            field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: cValues)
        case .void: set("V")
        }
        return field
    }

    /// Copies a value out of library memory; `depth` is that of the table or array holding it.
    init(_ field: amqp_field_value_t, depth: Int) {
        let kind = Unicode.Scalar(field.kind)
        if kind == "F" || kind == "A", depth >= AMQPTable.maximumDepth {
            self = .void
            return
        }
        switch kind {
        case "t": self = .bool(field.value.boolean != 0)
        case "b": self = .int8(field.value.i8)
        case "B": self = .uint8(field.value.u8)
        case "s": self = .int16(field.value.i16)
        case "u": self = .uint16(field.value.u16)
        case "I": self = .int32(field.value.i32)
        case "i": self = .uint32(field.value.u32)
        case "l": self = .int64(field.value.i64)
        case "L": self = .uint64(field.value.u64)
        case "f": self = .float(field.value.f32)
        case "d": self = .double(field.value.f64)
        case "D":
            self = .decimal(places: field.value.decimal.decimals, value: field.value.decimal.value)
        case "S": self = .string(String(amqpBytes: field.value.bytes))
        case "x": self = .bytes([UInt8](amqpBytes: field.value.bytes))
        case "T": self = .timestamp(field.value.u64)
        case "F": self = .table(AMQPTable(field.value.table, depth: depth + 1))
        case "A":
            let array = field.value.array
            var values: [AMQPFieldValue] = []
            if array.num_entries > 0, let entries = array.entries {
                values.reserveCapacity(Int(array.num_entries))
                for index in 0..<Int(array.num_entries) { values.append(AMQPFieldValue(entries[index], depth: depth + 1)) }
            }
            self = .array(values)
        default: self = .void
        }
    }
}
