import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1

extension BlitlineClient {
    /// Submits one job (`POST {api}/job`, form field `json` holding the job object).
    public func submit(_ job: BlitlineJob) async -> SubmitOutcome {
        await self.submit([job], isBatch: false).outcomes(jobCount: 1)[0]
    }

    /// Submits several jobs in one request (form field `json` holding a JSON array); the outcomes
    /// are in the order of `jobs`. An empty batch sends nothing.
    public func submit(_ jobs: [BlitlineJob]) async -> [SubmitOutcome] {
        await self.submitBatch(jobs).outcomes(jobCount: jobs.count)
    }

    /// Submits several jobs in one request, and says whether Blitline answered for each job or
    /// for the request as a whole (a refusal of the whole batch may be caused by one job).
    public func submitBatch(_ jobs: [BlitlineJob]) async -> SubmitAnswer {
        guard !jobs.isEmpty else { return .each([]) }
        return await self.submit(jobs, isBatch: true)
    }

    private func submit(_ jobs: [BlitlineJob], isBatch: Bool) async -> SubmitAnswer {
        let payload: JSONValue = isBatch ? .array(jobs.map(\.json)) : jobs[0].json
        var request = HTTPClientRequest(url: self.configuration.apiURL + "/job")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        let body = FormEncoding.encode([("json", payload.jsonBytes)])
        request.body = .bytes(ByteBuffer(bytes: body))

        var logger = self.logger
        logger[metadataKey: "blitline.jobs"] = "\(jobs.count)"
        logger.debug("submitting to Blitline", metadata: ["url": "\(request.url)", "body.bytes": "\(body.count)"])
        logger.trace("submit body", metadata: ["json": "\(jobs.map(\.loggableJSONString))"])

        let started = ContinuousClock.now
        let answer: SubmitAnswer
        do {
            let reply = try await self.exchange(request, timeout: self.configuration.submitTimeout)
            answer = SubmitReply.classify(
                status: reply.status,
                retryAfter: SubmitReply.retryAfter(reply.headers.first(name: "Retry-After")),
                body: Array(buffer: reply.body),
                jobCount: jobs.count,
                isBatch: isBatch
            )
            logger.debug(
                "Blitline answered submit",
                metadata: ["http.status": "\(reply.status)", "duration": "\(ContinuousClock.now - started)"]
            )
        } catch {
            let failure = Self.transportFailure(error, timeout: self.configuration.submitTimeout)
            logger.warning("submit to Blitline failed", metadata: ["error": "\(failure.message)"])
            answer = .whole(.transient(failure))
        }
        return answer
    }

    /// Describes an error thrown while talking to Blitline as a transient failure.
    static func transportFailure(_ error: any Error, timeout: Duration) -> BlitlineFailure {
        if error is CancellationError || Task.isCancelled {
            return BlitlineFailure(kind: .cancelled, message: "the request was cancelled")
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return BlitlineFailure(kind: .timeout, message: "no answer from Blitline within \(timeout)")
            case .connectTimeout:
                return BlitlineFailure(kind: .timeout, message: "connecting to Blitline timed out")
            default:
                return BlitlineFailure(kind: .connection, message: "HTTP error talking to Blitline: \(error)")
            }
        }
        if let error = error as? NIOTooManyBytesError {
            return BlitlineFailure(kind: .malformedReply, message: "Blitline's reply is too large (\(error))")
        }
        return BlitlineFailure(kind: .connection, message: "could not reach Blitline: \(error)")
    }
}

extension BlitlineJob {
    /// The job's JSON for logs: `application_id` and `postback_url` replaced by `"<redacted>"`. A
    /// postback URL carries the signed token that lets its holder post a result, so it is never
    /// logged, at any level.
    fileprivate var loggableJSONString: String {
        var json = self.json
        if json["application_id"] != nil { json["application_id"] = "<redacted>" }
        if json["postback_url"] != nil { json["postback_url"] = "<redacted>" }
        return json.jsonString
    }
}
