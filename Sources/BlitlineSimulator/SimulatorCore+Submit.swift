import Blitline
import Hummingbird

extension SimulatorCore {
    private static let maximumBodyBytes = 8 << 20

    /// `POST /job`: the documented form (`json=`), an `application/json` `{"json": …}` body, or a
    /// bare job object; the reply mirrors an object or an array.
    func handleSubmit(_ request: Request) async throws -> Response {
        self.count { $0.submitRequests += 1 }
        let (hang, latency, failure, status, retryAfter) = self.faults.withLock { faults in
            (faults.takeSubmitHang(), faults.submitLatency, faults.takeSubmitFailure(), faults.failSubmitStatus, faults.retryAfterSeconds)
        }
        if hang {
            self.count { $0.submitFaults += 1 }
            try await Task.sleep(for: self.faults.withLock { $0.hangDuration })
            return Response(status: .serviceUnavailable)
        }
        if latency > .zero { try await Task.sleep(for: latency) }
        let failed = { () -> Response in
            self.count { $0.submitFaults += 1 }
            return Self.injectedFailure(status: status, retryAfter: retryAfter)
        }
        if failure { return failed() }
        let answer = try await self.acceptJobs(of: request)
        // Accepted, and the answer lost on its way (a gateway's 502): the jobs run all the same.
        let lost = answer.status.code < 300 && self.faults.withLock { $0.takeLostSubmitAnswer() }
        return lost ? failed() : answer
    }

    /// The jobs of a submit, accepted or refused each: the answer Blitline gives.
    private func acceptJobs(of request: Request) async throws -> Response {
        var request = request
        let body = Array(buffer: try await request.collectBody(upTo: Self.maximumBodyBytes))
        guard let payload = Self.payload(of: body, contentType: request.headers[.contentType]) else {
            self.count { $0.jobsRejected += 1 }
            return Self.refusal("Invalid JSON. Send the job as a form field `json` holding the job's JSON", status: .badRequest)
        }
        let queryApplicationID = request.uri.queryParameters.get("application_id")
        switch payload {
        case .array(let jobs):
            let entries = jobs.map { self.accept($0, queryApplicationID: queryApplicationID) }
            let status = entries.allSatisfy({ $0.1 != nil }) ? entries.first?.1 ?? .ok : .ok
            return Response.json(["results": .array(entries.map(\.0))], status: status)
        default:
            let (entry, status) = self.accept(payload, queryApplicationID: queryApplicationID)
            return Response.json(["results": entry], status: status ?? .ok)
        }
    }

    /// An injected failure: `status` with its reason phrase as plain text, no Blitline `error`.
    private static func injectedFailure(status: Int, retryAfter: Int?) -> Response {
        let injected = HTTPResponse.Status(code: status)
        var response = Response(status: injected, body: .init(byteBuffer: ByteBuffer(string: injected.reasonPhrase)))
        response.headers[.contentType] = "text/plain"
        if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }

    /// Accepts one job: its reply entry, and the refusal status when refused.
    private func accept(_ job: JSONValue, queryApplicationID: String?) -> (JSONValue, HTTPResponse.Status?) {
        var job = job
        guard job.isObject else {
            self.count { $0.jobsRejected += 1 }
            return (["error": "Each job must be a JSON object"], .badRequest)
        }
        let characters = job.jsonBytes.count
        guard characters <= self.configuration.maxJobCharacters else {
            self.count { $0.jobsRejected += 1 }
            let message = "Job JSON is \(characters) characters; the maximum is \(self.configuration.maxJobCharacters)"
            return (["error": .string(message)], .contentTooLarge)
        }
        if job["application_id"] == nil, let queryApplicationID { job["application_id"] = .string(queryApplicationID) }
        guard let applicationID = job["application_id"]?.stringValue, !applicationID.isEmpty else {
            self.count { $0.jobsRejected += 1 }
            let message = "Your application ID is required to process any job. Check your Blitline account page for your application ID"
            return (["error": .string(message)], .badRequest)
        }
        if let allowed = self.configuration.allowedApplicationIDs, !allowed.contains(applicationID) {
            self.count { $0.jobsRejected += 1 }
            let message = "Application ID is not valid. Check your Blitline account page for your application ID"
            return (["error": .string(message)], .unauthorized)
        }
        let jobID = JobIDGenerator.next()
        let announced = JobProcessor.announcedImages(of: job, jobID: jobID)
        let simulated = SimulatedJob(jobID: jobID, json: job, applicationID: applicationID)
        if simulated.postbackURL == nil || job["force_longpoll_cache"]?.boolValue == true {
            self.pollCache.expect(jobID: jobID, applicationID: applicationID)
        }
        self.count { $0.jobsAccepted += 1 }
        self.jobQueue.yield(simulated)
        let images: [JSONValue] = announced.map { ["image_identifier": .string($0.identifier), $0.urlKey: .string($0.url)] }
        return (["job_id": .string(jobID), "images": .array(images)], nil)
    }

    /// The job or batch in a submit body, whichever of Blitline's encodings it uses.
    private static func payload(of body: [UInt8], contentType: String?) -> JSONValue? {
        if FormEncoding.isFormContentType(contentType) {
            guard let text = FormEncoding.value(of: "json", in: body) else { return nil }
            return try? JSONValue(parsing: text)
        }
        if let document = try? JSONValue(parsing: body) {
            switch document["json"] {
            case .string(let text): return try? JSONValue(parsing: text)
            case .some(let wrapped): return wrapped
            case .none: return document
            }
        }
        guard let text = FormEncoding.value(of: "json", in: body) else { return nil }
        return try? JSONValue(parsing: text)
    }

    private static func refusal(_ message: String, status: HTTPResponse.Status) -> Response {
        Response.json(["results": ["error": .string(message)]], status: status)
    }
}

/// Blitline-like job ids: a digit and 21 URL-safe base64 characters.
enum JobIDGenerator {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func next() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = [UInt8(ascii: "0") + UInt8.random(in: 0...9, using: &generator)]
        for _ in 0..<21 { bytes.append(Self.alphabet[Int.random(in: 0..<64, using: &generator)]) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
