import AsyncHTTPClient
import AsyncSupport
import Blitline
import Logging
import NIOCore

/// Delivers a finished job's result to its `postback_url` the way Blitline does: JSON
/// `{"results": …}` with the job's `postback_headers` for `v` above 1.17, the legacy form field
/// `results` otherwise; retried on Blitline's schedule (or the configured one) when the job asks
/// for it.
struct PostbackSender: Sendable {
    let httpClient: HTTPClient
    /// The waits before each retry, before scaling by `speedFactor`.
    let retryDelays: [Duration]
    let speedFactor: Double
    let timeout: Duration
    /// Each postback on a new connection, closed after its answer.
    var freshConnections = false
    /// The postbacks being sent at once (the pool's connections); the rest wait here, so that a
    /// postback's timeout runs from its sending, and the HTTP client's own queue stays short
    /// (AsyncHTTPClient 1.x copies that queue as each new connection takes a request from it:
    /// with thousands of postbacks waiting and a connection per postback, the simulator spent
    /// more CPU in those copies than the bridge did handling the postbacks).
    let sending: Budget
    let statistics: StatisticsRecorder
    let logger: Logger

    /// Sends the postback, retrying per schedule; returns whether any attempt got a 2xx.
    func deliver(_ job: SimulatedJob, results: JSONValue) async -> Bool {
        guard let url = job.postbackURL else { return false }
        var request = Self.request(for: job, url: url, results: results)
        if self.freshConnections { request.headers.replaceOrAdd(name: "Connection", value: "close") }
        let delays = job.retriesPostback ? self.retryDelays : []
        for attempt in 0...delays.count {
            if attempt > 0 {
                guard (try? await Task.sleep(for: delays[attempt - 1] * self.speedFactor)) != nil else { return false }
            }
            let status = try? await self.sending.spending(1) {
                self.statistics.count { $0.postbacksSent += 1 }
                return await self.send(request)
            }
            self.logger.info(
                "postback",
                metadata: [
                    "job_id": "\(job.jobID)", "attempt": "\(attempt + 1)",
                    "status": "\(status.map(String.init) ?? "no answer")",
                ]
            )
            if let status, (200..<300).contains(status) {
                self.statistics.count { $0.postbacksAcknowledged += 1 }
                return true
            }
            self.statistics.count { $0.postbacksFailedAttempts += 1 }
        }
        self.statistics.count { $0.postbacksGivenUp += 1 }
        return false
    }

    private func send(_ request: HTTPClientRequest) async -> Int? {
        do {
            let response = try await self.httpClient.execute(request, timeout: TimeAmount.nanoseconds(Int64(self.timeout.seconds * 1e9)))
            _ = try await response.body.collect(upTo: 1 << 20)
            return Int(response.status.code)
        } catch {
            return nil
        }
    }

    static func request(for job: SimulatedJob, url: String, results: JSONValue) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "User-Agent", value: "blitline-simulator")
        if job.postsJSON {
            request.headers.add(name: "Content-Type", value: "application/json")
            for header in job.postbackHeaders { request.headers.add(name: header.name, value: header.value) }
            let body = JSONValue.object([.init(key: "results", value: results)]).jsonBytes
            request.body = .bytes(ByteBuffer(bytes: body))
        } else {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            var fields: [(name: String, value: [UInt8])] = [("results", results.jsonBytes)]
            let failed = results["images"]?.arrayValue?.contains { $0["error"] != nil } ?? false
            if failed { fields.append(("error", Array("true".utf8))) }
            request.body = .bytes(ByteBuffer(bytes: FormEncoding.encode(fields)))
        }
        return request
    }
}

extension Duration {
    static func * (lhs: Duration, rhs: Double) -> Duration {
        .nanoseconds(Int64((lhs.seconds * rhs * 1e9).rounded()))
    }
}
