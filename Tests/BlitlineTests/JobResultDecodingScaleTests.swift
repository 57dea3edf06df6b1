import Blitline
import Testing

/// Result decoding on the largest bodies the listener takes (8 MiB): it must cost about what
/// reading the body costs, whatever the body holds.
@Suite struct JobResultDecodingScaleTests {
    /// A body of about 10 MiB: 200,000 distinct failed identifiers, half of them repeated in the legacy
    /// `images[]` entries. De-duplicating with a linear scan took minutes on such a body.
    @Test func manyFailedIdentifiersDecodeInLinearTime() throws {
        let count = 200_000
        let identifiers = (0..<count).map { "image-\($0)-0123456789" }
        let repeated = identifiers.prefix(count / 2).map { #"{"image_identifier":"\#($0)","error":"x"}"# }
        let body = #"{"results":{"job_id":"j1","failed_image_identifiers":["#
            + identifiers.map { "\"\($0)\"" }.joined(separator: ",")
            + #"],"images":["# + repeated.joined(separator: ",") + "]}}"
        let bytes = Array(body.utf8)
        #expect(bytes.count > 8 << 20)

        let started = ContinuousClock.now
        let result = try JobResult.decode(postbackBody: bytes, contentType: "application/json")
        let elapsed = ContinuousClock.now - started

        #expect(result.failedImageIdentifiers == identifiers, "in first-occurrence order, each once")
        #expect(elapsed < .seconds(20), "decoding took \(elapsed)")
    }

    @Test func repeatsAreDroppedInFirstOccurrenceOrder() throws {
        let body = #"{"results":{"job_id":"j2","failed_image_identifiers":["b","a","b"],"#
            + #""images":[{"image_identifier":"c","error":"x"},{"image_identifier":"a","error":"y"}]}}"#
        let result = try JobResult.decode(postbackBody: Array(body.utf8), contentType: "application/json")
        #expect(result.failedImageIdentifiers == ["b", "a", "c"])
    }
}
