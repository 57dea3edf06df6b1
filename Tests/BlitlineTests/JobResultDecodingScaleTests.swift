import Blitline
import Testing
import TestSupport

/// Result decoding on the largest bodies the listener takes (8 MiB): it must cost about what
/// reading the body costs, whatever the body holds.
@Suite struct JobResultDecodingScaleTests {
    /// A body of about 10 MiB: 200,000 distinct failed identifiers, half of them repeated in the legacy
    /// `images[]` entries. De-duplicating with a linear scan took minutes on such a body.
    /// Seconds of CPU in a debug build: on a thread of its own, so that the cooperative pool's two
    /// threads stay free for the servers and timers of the tests running beside it.
    @Test func manyFailedIdentifiersDecodeInLinearTime() async throws {
        let count = 200_000
        let identifiers = (0..<count).map { "image-\($0)-0123456789" }
        let (size, decoded, elapsed) = try await onOwnThread {
            let repeated = identifiers.prefix(count / 2).map { #"{"image_identifier":"\#($0)","error":"x"}"# }
            let body = #"{"results":{"job_id":"j1","failed_image_identifiers":["#
                + identifiers.map { "\"\($0)\"" }.joined(separator: ",")
                + #"],"images":["# + repeated.joined(separator: ",") + "]}}"
            let bytes = Array(body.utf8)
            let started = ContinuousClock.now
            let result = try JobResult.decode(postbackBody: bytes, contentType: "application/json")
            return (bytes.count, result.failedImageIdentifiers, ContinuousClock.now - started)
        }
        #expect(size > 8 << 20)
        #expect(decoded == identifiers, "in first-occurrence order, each once")
        #expect(elapsed < .seconds(20), "decoding took \(elapsed)")
    }

    @Test func repeatsAreDroppedInFirstOccurrenceOrder() throws {
        let body = #"{"results":{"job_id":"j2","failed_image_identifiers":["b","a","b"],"#
            + #""images":[{"image_identifier":"c","error":"x"},{"image_identifier":"a","error":"y"}]}}"#
        let result = try JobResult.decode(postbackBody: Array(body.utf8), contentType: "application/json")
        #expect(result.failedImageIdentifiers == ["b", "a", "c"])
    }
}
