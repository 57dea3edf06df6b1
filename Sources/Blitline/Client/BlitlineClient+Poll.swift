import AsyncHTTPClient
import Logging
import NIOCore

extension BlitlineClient {
    /// Long-polls `GET {poll}/listen/{job_id}` once, holding the request open up to
    /// ``Configuration/pollTimeout``.
    ///
    /// The body is read as JSON whatever its content type, `results` decoded a second time when it
    /// is JSON text. A timed-out wait, an empty body or a non-2xx status other than 429 is
    /// ``PollOutcome/pending``. Callers keep within Blitline's poll rate with a
    /// ``PollRateLimiter``.
    public func poll(jobID: String) async -> PollOutcome {
        let url = self.configuration.pollURL + "/listen/" + Self.pathSegment(jobID)
        var logger = self.logger
        logger[metadataKey: "blitline.job_id"] = "\(jobID)"
        do {
            let answer = try await self.exchange(HTTPClientRequest(url: url), timeout: self.configuration.pollTimeout)
            let body = Array(buffer: answer.body)
            let status = answer.status
            logger.debug("polled Blitline", metadata: ["http.status": "\(status)", "body.bytes": "\(body.count)"])
            if status == 429 {
                return .failed(
                    BlitlineFailure(
                        kind: .rateLimited,
                        message: "Blitline's poll cache answered HTTP 429 (too many requests)",
                        retryAfter: SubmitReply.retryAfter(answer.headers.first(name: "Retry-After"))
                    )
                )
            }
            guard (200..<300).contains(status), body.contains(where: { !Self.isWhitespace($0) }) else {
                return .pending
            }
            do {
                return .result(try JobResult.decode(pollBody: body))
            } catch {
                logger.warning("poll answer is not a Blitline result", metadata: ["error": "\(error)"])
                return .failed(BlitlineFailure(kind: .malformedReply, message: "poll answer: \(error)"))
            }
        } catch {
            let failure = Self.transportFailure(error, timeout: self.configuration.pollTimeout)
            if failure.kind == .timeout, !(error is HTTPClientError && (error as! HTTPClientError) == .connectTimeout) {
                return .pending
            }
            logger.warning("poll of Blitline failed", metadata: ["error": "\(failure.message)"])
            return .failed(failure)
        }
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t")
    }

    /// Percent-encodes a job id for use as one path segment.
    static func pathSegment(_ id: String) -> String {
        var output = ""
        for byte in id.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                output.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                output += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return output
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        self.count >= width ? self : String(repeating: "0", count: width - self.count) + self
    }
}
