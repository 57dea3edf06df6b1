import Blitline
import Testing

@Suite("JobResult decoding")
struct JobResultDecodingTests {
    func decode(_ text: String, contentType: String? = "application/json") throws -> JobResult {
        try JobResult.decode(postbackBody: Array(text.utf8), contentType: contentType)
    }

    @Test("the research document's success example decodes to exactly what it says")
    func successExample() throws {
        let result = try decode(
            """
            {"results": {
              "job_id": "4hT9xQ2LrPz0aB1cD2eF3gH",
              "original_meta": {"width": 3000, "height": 2000, "date_created": "2019:05:01 10:00:00",
                                "iso_date_created": "2019-05-01T10:00:00.0000+00:00"},
              "images": [
                {"image_identifier": "large", "s3_url": "http://s3.amazonaws.com/my-bucket/img/42/large.jpg",
                 "meta": {"width": 800, "height": 533}},
                {"image_identifier": "thumb", "s3_url": "http://s3.amazonaws.com/my-bucket/img/42/thumb.jpg",
                 "meta": {"width": 150, "height": 150}}]}}
            """
        )
        #expect(result.jobID == "4hT9xQ2LrPz0aB1cD2eF3gH")
        #expect(result.original == ImageSize(width: 3000, height: 2000))
        #expect(
            result.images == [
                ResultImage(imageIdentifier: "large", url: "http://s3.amazonaws.com/my-bucket/img/42/large.jpg", width: 800, height: 533),
                ResultImage(imageIdentifier: "thumb", url: "http://s3.amazonaws.com/my-bucket/img/42/thumb.jpg", width: 150, height: 150),
            ]
        )
        #expect(result.errors.isEmpty && result.failedImageIdentifiers.isEmpty && result.isCompleted)
    }

    @Test("the research document's failure example decodes to exactly what it says")
    func failureExample() throws {
        let result = try decode(
            """
            {"results": {"job_id": "9Zy8Xw7Vu6Ts5Rq4Po3Nm2L", "original_meta": {}, "images": [],
              "errors": ["Image processing failed. Failed to download file from https://example.com/in.jpg. ..."],
              "failed_image_identifiers": ["large", "thumb"]}}
            """
        )
        #expect(result.jobID == "9Zy8Xw7Vu6Ts5Rq4Po3Nm2L")
        #expect(result.original == nil)
        #expect(result.images.isEmpty)
        #expect(result.errors == ["Image processing failed. Failed to download file from https://example.com/in.jpg. ..."])
        #expect(result.failedImageIdentifiers == ["large", "thumb"])
        #expect(!result.isCompleted)
    }

    @Test("original_meta null, missing errors arrays and unknown fields are tolerated")
    func nullMeta() throws {
        let result = try decode(#"{"results":{"job_id":"j","original_meta":null,"images":[],"extracted_colors":[1],"hash":123456789012345678901}}"#)
        #expect(result.original == nil && result.isCompleted)
        #expect(result.originalJSON["hash"] == .number("123456789012345678901"))
    }

    @Test("legacy v<=1.17 errors as separate entries inside images[]")
    func legacySeparateErrors() throws {
        let result = try decode(
            #"{"results":{"job_id":"j","original_meta":{},"images":[{"error":"Image processing failed. Unknown function named 'blu3r'"},{"failed_image_identifiers":["a","b"]}]}}"#
        )
        #expect(result.errors == ["Image processing failed. Unknown function named 'blu3r'"])
        #expect(result.failedImageIdentifiers == ["a", "b"])
        #expect(result.images.isEmpty && !result.isCompleted)
    }

    @Test("v1.18-1.19 error and identifiers in one images[] entry")
    func combinedLegacyError() throws {
        let result = try decode(#"{"results":{"job_id":"j","images":[{"error":"Screenshot failed","failed_image_identifiers":["s"]}]}}"#)
        #expect(result.errors == ["Screenshot failed"])
        #expect(result.failedImageIdentifiers == ["s"])
    }

    @Test("each destination field is a url; an empty object where a URL should be is nil")
    func destinations() throws {
        let result = try decode(
            #"{"results":{"job_id":"j","images":[{"image_identifier":"a","s3_url":"s3"},{"image_identifier":"b","azure_url":"az"},{"image_identifier":"c","ftp_path":"ftp"},{"image_identifier":"d__0","url":"burst"},{"image_identifier":"e_1","s3_url":{}}]}}"#
        )
        #expect(result.images.map(\.url) == ["s3", "az", "ftp", "burst", nil])
        #expect(result.images.map(\.imageIdentifier) == ["a", "b", "c", "d__0", "e_1"])
        #expect(result.images[4].width == nil)
    }

    @Test("results given as JSON text is decoded twice (poll and postback)")
    func stringResults() throws {
        let inner = #"{\"job_id\":\"j\",\"original_meta\":{\"width\":5,\"height\":6},\"images\":[]}"#
        let poll = try JobResult.decode(pollBody: Array("{\"results\":\"\(inner)\"}".utf8))
        #expect(poll.jobID == "j" && poll.original == ImageSize(width: 5, height: 6))
        #expect(try decode("{\"results\":\"\(inner)\"}").jobID == "j")
    }

    @Test("legacy form-encoded postback, with or without a content type")
    func legacyForm() throws {
        let body = "results=%7B%22job_id%22%3A%22j%22%2C%22images%22%3A%5B%7B%22image_identifier%22%3A%22t%22%2C%22s3_url%22%3A%22u%22%7D%5D%7D&error=true"
        let form = try decode(body, contentType: "application/x-www-form-urlencoded; charset=utf-8")
        #expect(form.jobID == "j" && form.images.first?.url == "u" && form.isCompleted)
        #expect(try decode(body, contentType: nil).jobID == "j")
    }

    @Test("a JSON body is accepted without a content type")
    func noContentType() throws {
        #expect(try decode(#"{"results":{"job_id":"j"}}"#, contentType: nil).jobID == "j")
    }

    @Test("bodies that are not a result are refused", arguments: ["", "{}", "[]", #"{"results":{}}"#, "results=notjson", "<html>"])
    func refused(_ body: String) {
        #expect(throws: ResultDecodingError.self) { try decode(body) }
    }

    @Test("every truncation of a result throws and never crashes")
    func truncated() {
        let body = Array(#"{"results":{"job_id":"j","original_meta":{"width":1,"height":2},"images":[{"image_identifier":"a","s3_url":"u","meta":{"width":1,"height":2}}]}}"#.utf8)
        for length in 0..<body.count {
            #expect(throws: ResultDecodingError.self) {
                try JobResult.decode(postbackBody: Array(body[0..<length]), contentType: "application/json")
            }
        }
    }
}
