/// `application/x-www-form-urlencoded` encoding, as Blitline's submit endpoint and its legacy
/// postbacks use it.
package enum FormEncoding {
    /// Encodes fields as `name=value&…`, every byte outside the unreserved set percent-encoded.
    package static func encode(_ fields: [(name: String, value: [UInt8])]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.count * 2 + 2 })
        for (index, field) in fields.enumerated() {
            if index > 0 { output.append(UInt8(ascii: "&")) }
            self.appendEscaped(field.name.utf8, to: &output)
            output.append(UInt8(ascii: "="))
            self.appendEscaped(field.value, to: &output)
        }
        return output
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

    private static func appendEscaped(_ bytes: some Sequence<UInt8>, to output: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"), UInt8(ascii: "~"):
                output.append(byte)
            default:
                output.append(UInt8(ascii: "%"))
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0x0F)])
            }
        }
    }

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
