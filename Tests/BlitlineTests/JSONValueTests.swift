import Blitline
import Testing

@Suite("JSONValue")
struct JSONValueTests {
    @Test("numbers, key order, escapes and unicode survive a round trip")
    func roundTrip() throws {
        let text = #"{"z":1.220,"a":12345678901234567890,"neg":-0.5e-7,"s":"caf\u00e9 \"q\" \n \ud83d\ude00","arr":[true,false,null,{}],"a":2}"#
        let value = try JSONValue(parsing: text)
        #expect(value.objectMembers?.map(\.key) == ["z", "a", "neg", "s", "arr", "a"])
        #expect(value["z"] == .number("1.220"))
        #expect(value["a"] == .number("12345678901234567890"))
        #expect(value["s"]?.stringValue == "café \"q\" \n 😀")
        let again = try JSONValue(parsing: value.jsonBytes)
        #expect(again == value)
        #expect(value.jsonString.contains(#""z":1.220,"a":12345678901234567890,"neg":-0.5e-7"#))
    }

    @Test("objects and arrays nested among siblings keep their own members, however many")
    func nestedSiblings() throws {
        // Each object and array is gathered on the parser's shared stacks: an inner one that starts
        // an outer one's stack, siblings after it, and more members than the stacks first hold.
        let wide = (0..<40).map { #""k\#($0)":[\#($0),{"i":\#($0)}]"# }.joined(separator: ",")
        let text = #"{"first":{"a":[{"b":1},{"c":[2,3]}],"d":{}},"wide":{"# + wide + #"},"last":[[],[{"e":4}],5]}"#
        let value = try JSONValue(parsing: text)
        #expect(value.objectMembers?.map(\.key) == ["first", "wide", "last"])
        #expect(value["first"]?["a"]?.arrayValue?.count == 2)
        #expect(value["first"]?["a"]?.arrayValue?[1]["c"] == .array([.number("2"), .number("3")]))
        #expect(value["first"]?["d"] == .object([]))
        #expect(value["wide"]?.objectMembers?.count == 40)
        #expect(value["wide"]?["k39"]?.arrayValue?[1]["i"] == .number("39"))
        #expect(value["last"] == .array([.array([]), .array([.object([.init(key: "e", value: .number("4"))])]), .number("5")]))
        #expect(value.jsonString == text)
    }

    @Test("strings long enough to live on the heap keep their values through the parser's stacks")
    func longStringsAmongSiblings() throws {
        // Members and elements are moved off the parser's stacks, not copied: each string must
        // belong to its object alone, intact, after its siblings and the stacks are gone.
        let items = (0..<50).map { #"{"identifier-of-the-image-\#($0)":"https://bucket.example.com/images/\#($0).jpg","n":[\#($0),"\#(String(repeating: "x", count: $0))"]}"# }
        let text = "[" + items.joined(separator: ",") + "]"
        let value = try JSONValue(parsing: text)
        let elements = try #require(value.arrayValue)
        #expect(elements.count == 50)
        for (index, element) in elements.enumerated() {
            #expect(element["identifier-of-the-image-\(index)"]?.stringValue == "https://bucket.example.com/images/\(index).jpg")
            #expect(element["n"]?[1]?.stringValue == String(repeating: "x", count: index))
        }
        #expect(value.jsonString == text)
    }

    @Test("strings are written with exactly the escapes JSON needs, and read back, ASCII or not")
    func stringEscapes() throws {
        let string = "a\"b\\c\n\r\t\u{01}\u{1F}/ é😀 end"
        let text = JSONValue.string(string).jsonString
        #expect(text == #""a\"b\\c\n\r\t\u0001\u001f/ é😀 end""#)
        #expect(try JSONValue(parsing: text).stringValue == string)
        #expect(JSONValue.string("").jsonString == #""""#)
        #expect(try JSONValue(parsing: #""plain ascii""#).stringValue == "plain ascii")
        #expect(try JSONValue(parsing: #""raw café 😀""#).stringValue == "raw café 😀")
    }

    @Test("a document written by JSONWriter has its commas, nulls and escapes where they belong")
    func writer() throws {
        var json = JSONWriter(reservingCapacity: 16)
        json.beginObject()
        json.member("s", "a\"b\n")
        json.member("none", nil)
        json.member("n", number: -42)
        json.member("no number", number: nil)
        json.key("empty")
        json.beginObject()
        json.endObject()
        json.key("list")
        json.beginArray()
        json.beginObject()
        json.member("i", number: 1)
        json.endObject()
        json.strings(["x", "y"])
        json.strings([])
        json.value(.bool(true))
        json.endArray()
        json.key("last")
        json.value(.object([.init(key: "k", value: .null)]))
        json.endObject()
        let text = String(decoding: json.bytes, as: UTF8.self)
        #expect(text == #"{"s":"a\"b\n","none":null,"n":-42,"no number":null,"empty":{},"list":[{"i":1},["x","y"],[],true],"last":{"k":null}}"#)
        #expect(try JSONValue(parsing: json.bytes)["list"]?.arrayValue?.count == 4)
    }

    @Test("a form body escapes every byte outside the unreserved set and decodes back to its fields")
    func formEncoding() throws {
        let job = Array(#"{"src":"https://x.test/a b.jpg?q=1&r=2","n":"é~_-."}"#.utf8) + [0, 0xFF]
        let body = FormEncoding.encode([("json", job), ("e=&", [])])
        #expect(String(decoding: body, as: UTF8.self).hasPrefix("json=%7B%22src%22%3A%22https%3A%2F%2Fx.test%2Fa%20b.jpg%3Fq%3D1%26r%3D2%22"))
        #expect(String(decoding: body, as: UTF8.self).hasSuffix("%C3%A9~_-.%22%7D%00%FF&e%3D%26="))
        let fields = try #require(FormEncoding.decode(body))
        #expect(fields.map(\.name) == ["json", "e=&"])
        #expect(fields.map(\.value) == [job, []])
        #expect(FormEncoding.encode([]).isEmpty)
    }

    @Test("malformed documents throw", arguments: [
        "", " ", "{", "[1,]", "{\"a\":}", "01", "1.", "-", "1e", "\"abc", "\"\\x\"", "tru", "nul", "[1 2]",
        "{\"a\" 1}", "\"\\ud800\"", "1 2", "{'a':1}", "\u{01}",
    ])
    func malformed(_ text: String) {
        #expect(throws: JSONParsingError.self) { try JSONValue(parsing: text) }
    }

    @Test("invalid UTF-8 is reported as such")
    func invalidUTF8() {
        #expect {
            try JSONValue(parsing: [UInt8(ascii: "\""), 0xC3, 0x28, UInt8(ascii: "\"")])
        } throws: { ($0 as? JSONParsingError)?.isInvalidUTF8 == true }
    }

    @Test("nesting beyond the limit throws instead of exhausting the stack")
    func deepNesting() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParsingError.self) { try JSONValue(parsing: deep) }
        let fine = String(repeating: "[", count: JSONValue.maximumDepth) + String(repeating: "]", count: JSONValue.maximumDepth)
        _ = try JSONValue(parsing: fine)
    }

    @Test("every truncation of a job and random bytes throw or parse, never crash")
    func fuzz() throws {
        let job = Array(
            #"{"application_id":"x","src":"https://e.com/a.jpg","v":1.22,"functions":[{"name":"resize_to_fit","params":{"width":800,"only_shrink_larger":true},"save":{"image_identifier":"large","s3_destination":{"bucket":"b","key":"k\u00e9.jpg"}}}]}"#
                .utf8
        )
        for length in 0..<job.count {
            #expect(throws: JSONParsingError.self) { try JSONValue(parsing: job[0..<length]) }
        }
        var generator = SeededGenerator(seed: 42)
        let alphabet = Array(#"{}[],:"\ 0123456789.eE+-truefalsnul"#.utf8) + [0xC3, 0xA9, 0xFF, 0x00]
        var parsed = 0
        for _ in 0..<20_000 {
            let length = Int.random(in: 0..<40, using: &generator)
            var bytes = (0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }
            if Bool.random(using: &generator), !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            if let value = try? JSONValue(parsing: bytes) {
                parsed += 1
                #expect(try JSONValue(parsing: value.jsonBytes) == value)
            }
        }
        #expect(parsed > 0)
    }
}

/// A deterministic generator (SplitMix64), so that a fuzz failure can be reproduced.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
