import Blitline
import Testing

@Suite("BlitlineJob validation and preparation")
struct BlitlineJobTests {
    static let valid = #"{"src":"https://e.com/a.jpg","functions":[{"name":"no_op","save":{"image_identifier":"x"}}]}"#

    func validate(_ text: String, defaultID: String? = "app", maxBytes: Int = 1 << 20) throws(JobValidationError) -> BlitlineJob {
        try BlitlineJob.validate(Array(text.utf8), defaultApplicationID: defaultID, maxBytes: maxBytes)
    }

    @Test("a valid job passes and keeps its JSON")
    func valid() throws {
        let job = try validate(Self.valid)
        #expect(job.json["src"]?.stringValue == "https://e.com/a.jpg")
        #expect(job.applicationID == nil)
    }

    @Test(
        "each invalid request names the field and what was expected",
        arguments: [
            ("not json", JobValidationError.Kind.notJSON, "not valid JSON"),
            ("[1,2]", .notAnObject, "an array; expected one Blitline job as a JSON object"),
            (#"{"functions":[{"name":"no_op"}]}"#, .missingSource, "`src` is missing"),
            (#"{"src":42,"functions":[{"name":"no_op"}]}"#, .missingSource, "`src` is a number"),
            (#"{"src":"u"}"#, .missingFunctions, "`functions` is missing"),
            (#"{"src":"u","functions":[]}"#, .missingFunctions, "`functions` is an empty array"),
            (#"{"src":"u","functions":{"name":"x"}}"#, .missingFunctions, "`functions` is an object"),
            (#"{"src":"u","functions":[{"params":{}}]}"#, .missingFunctions, "`functions[0].name`"),
            (#"{"src":"u","functions":[{"name":"no_op"}],"postback_url":"http://x"}"#, .postbackURLPresent, "`postback_url` must be left out"),
            (#"{"src":"u","functions":[{"name":"no_op"}],"application_id":""}"#, .missingApplicationID, "`application_id` is empty"),
        ]
    )
    func invalid(_ text: String, kind: JobValidationError.Kind, fragment: String) {
        #expect {
            try validate(text)
        } throws: { error in
            let error = error as! JobValidationError
            return error.kind == kind && error.message.contains(fragment)
        }
    }

    @Test("no application id from either source is refused; a default or the job's own is enough")
    func applicationID() throws {
        #expect(throws: JobValidationError.self) { try validate(Self.valid, defaultID: nil) }
        let own = #"{"application_id":"mine","src":"u","functions":[{"name":"no_op"}]}"#
        #expect(try validate(own, defaultID: nil).applicationID == "mine")
        #expect(try validate(Self.valid, defaultID: "default").applicationID == nil)
    }

    @Test("a request over the byte limit is refused with its size")
    func tooLarge() {
        #expect {
            try validate(Self.valid, maxBytes: 50)
        } throws: { error in
            let error = error as! JobValidationError
            return error.kind == .tooLarge && error.message.contains("at most 50 bytes")
        }
    }

    @Test("non-UTF-8 bytes are refused as not UTF-8")
    func notUTF8() {
        #expect {
            try BlitlineJob.validate([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], defaultApplicationID: "a", maxBytes: 100)
        } throws: { ($0 as! JobValidationError).message.contains("not valid UTF-8") }
    }

    @Test("prepared() adds only what the bridge owns; everything else passes byte for byte")
    func prepared() throws {
        let text = #"{"src":"https://e.com/a.jpg","future_field":{"x":[1,2]},"hash":12345678901234567890,"functions":[{"name":"blur","params":{"sigma":1.220},"save":{"image_identifier":"i"}}],"pre_process":{"move_original":true}}"#
        let job = try validate(text)
        let prepared = job.prepared(applicationID: "app-secret", postbackURL: "https://bridge/pb?sig=1")
        let output = prepared.json.jsonString
        #expect(output.hasPrefix(String(text.dropLast())))
        #expect(output.hasSuffix(#","application_id":"app-secret","v":1.22,"postback_url":"https://bridge/pb?sig=1","retry_postback":true}"#))
        #expect(output.contains("1.220"))
        #expect(output.contains("12345678901234567890"))
        #expect(prepared.applicationID == "app-secret")
    }

    @Test("prepared() keeps the job's own application id and v, and adds no postback in polling mode")
    func preparedKeepsOwnValues() throws {
        let job = try validate(#"{"application_id":"own","v":1.17,"src":"u","functions":[{"name":"no_op"}]}"#)
        let prepared = job.prepared(applicationID: "default", postbackURL: nil)
        #expect(prepared.json.jsonString == #"{"application_id":"own","v":1.17,"src":"u","functions":[{"name":"no_op"}]}"#)
        #expect(!prepared.redactedJSONString.contains("own"))
    }
}
