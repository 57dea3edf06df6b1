import Blitline
import Hummingbird

extension SimulatorCore {
    /// `GET /listen/{job_id}`: the `{"results": …}` document as `text/plain` once the job has
    /// ended; held open up to the poll wait, then an empty 200. HTTP 429 beyond the poll rate of
    /// the job's application id.
    func handleListen(jobID: String) async -> Response {
        self.count { $0.polls += 1 }
        guard self.pollCache.admit(jobID: jobID) else {
            self.count { $0.pollsRateLimited += 1 }
            var response = Response.json(["error": "Too many requests"], status: .tooManyRequests)
            response.headers[.retryAfter] = "1"
            return response
        }
        guard let body = await self.pollCache.wait(jobID: jobID, limit: self.configuration.pollWait) else {
            return Response(status: .ok, headers: [.contentType: "text/plain"])
        }
        self.count { $0.pollsAnswered += 1 }
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: body))
        )
    }

    /// `POST /_control`: changes the fault plan (and `reset_stats`), answers the plan in force.
    func handleControl(_ request: Request) async throws -> Response {
        var request = request
        let body = Array(buffer: try await request.collectBody(upTo: 1 << 16))
        let json: JSONValue
        do {
            json = body.isEmpty ? [:] : try JSONValue(parsing: body)
        } catch {
            return Response.json(["error": .string("not JSON: \(error)")], status: .badRequest)
        }
        do {
            try self.faults.withLock { (faults) throws(ControlError) in
                var changed = faults
                try changed.apply(json)
                faults = changed
            }
        } catch {
            return Response.json(["error": .string(error.description)], status: .badRequest)
        }
        if json["reset_stats"]?.boolValue == true {
            self.statistics.reset()
        }
        return self.controlResponse()
    }

    func controlResponse() -> Response {
        Response.json(["faults": self.faults.withLock { $0.json }])
    }
}
