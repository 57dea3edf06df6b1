/// `application/x-www-form-urlencoded` encoding, as Blitline's submit endpoint and its legacy
/// postbacks use it.
package enum FormEncoding {
    /// Encodes fields as `name=value&…`, every byte outside the unreserved set percent-encoded.
    /// Written into a buffer of the largest size the fields can take, with no capacity check per
    /// byte: submit bodies are large.
    package static func encode(_ fields: [(name: String, value: [UInt8])]) -> [UInt8] {
        let capacity = fields.reduce(0) { $0 + 3 * ($1.name.utf8.count + $1.value.count) + 2 }
        return [UInt8](unsafeUninitializedCapacity: capacity) { output, count in
            for (index, field) in fields.enumerated() {
                if index > 0 { self.put(UInt8(ascii: "&"), into: output, at: &count) }
                self.escape(Array(field.name.utf8), into: output, at: &count)
                self.put(UInt8(ascii: "="), into: output, at: &count)
                self.escape(field.value, into: output, at: &count)
            }
        }
    }

    /// Decodes a form body into its fields in order; `+` means a space. Returns `nil` when a
    /// percent escape is malformed.
    package static func decode(_ body: [UInt8]) -> [(name: String, value: [UInt8])]? {
        var fields: [(name: String, value: [UInt8])] = []
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let equals = pair.firstIndex(of: UInt8(ascii: "="))
            guard let name = self.unescape(pair[..<(equals ?? pair.endIndex)]) else { return nil }
            let value = equals.map { self.unescape(pair[pair.index(after: $0)...]) } ?? []
            guard let value else { return nil }
            fields.append((String(decoding: name, as: UTF8.self), value))
        }
        return fields
    }

    /// The value of the first field called `name`.
    package static func value(of name: String, in body: [UInt8]) -> [UInt8]? {
        self.decode(body)?.first(where: { $0.name == name })?.value
    }

    /// Whether the content type is `application/x-www-form-urlencoded` (parameters ignored).
    package static func isFormContentType(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        return contentType.lowercased().hasPrefix("application/x-www-form-urlencoded")
    }

    private static func escape(_ bytes: [UInt8], into output: UnsafeMutableBufferPointer<UInt8>, at count: inout Int) {
        for byte in bytes {
            if self.isUnreserved[Int(byte)] {
                self.put(byte, into: output, at: &count)
            } else {
                self.put(UInt8(ascii: "%"), into: output, at: &count)
                self.put(self.hexDigits[Int(byte >> 4)], into: output, at: &count)
                self.put(self.hexDigits[Int(byte & 0x0F)], into: output, at: &count)
            }
        }
    }

    private static func put(_ byte: UInt8, into output: UnsafeMutableBufferPointer<UInt8>, at count: inout Int) {
        output.initializeElement(at: count, to: byte)
        count += 1
    }

    /// The bytes written as they are: letters, digits and `-._~`.
    private static let isUnreserved: [Bool] = (0...255).map { byte in
        switch UInt8(byte) {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default: false
        }
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// Concrete (not generic) so that it compiles to a tight loop: submit bodies are large.
    private static func unescape(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var iterator = bytes.makeIterator()
        func hexValue(_ byte: UInt8?) -> UInt8? {
            switch byte {
            case .some(UInt8(ascii: "0")...UInt8(ascii: "9")): byte! - UInt8(ascii: "0")
            case .some(UInt8(ascii: "a")...UInt8(ascii: "f")): byte! - UInt8(ascii: "a") + 10
            case .some(UInt8(ascii: "A")...UInt8(ascii: "F")): byte! - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"): output.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = hexValue(iterator.next()), let low = hexValue(iterator.next()) else { return nil }
                output.append(high << 4 | low)
            default: output.append(byte)
            }
        }
        return output
    }
}
