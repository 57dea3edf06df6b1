import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1

/// Blitline's HTTP API: submitting jobs and long-polling their results.
///
/// Shares one `HTTPClient` (and so its connection pool) with the rest of the process; the caller
/// owns it and shuts it down. Create that client with ``Configuration/httpClientConfiguration``
/// so that redirects are not followed and connects time out as configured. The application id
/// travels only in request bodies and is never logged.
public struct BlitlineClient: Sendable {
    /// Where Blitline is and how long to wait for it.
    public struct Configuration: Sendable {
        /// Base URL of the submit API; jobs go to `POST {apiURL}/job`. Default
        /// `https://api.blitline.com`.
        public var apiURL: String
        /// Base URL of the poll cache; results come from `GET {pollURL}/listen/{job_id}`. Default
        /// `https://cache.blitline.com`.
        public var pollURL: String
        /// The longest a submit may take, connect included. Default 30 s.
        public var submitTimeout: Duration
        /// The longest one long poll is held open before it counts as "not yet". Default 60 s.
        public var pollTimeout: Duration
        /// The longest a connection attempt may take (applied through
        /// ``httpClientConfiguration``). Default 10 s.
        public var connectTimeout: Duration
        /// Larger reply bodies are a failure. Default 4 MiB.
        public var maxReplyBytes: Int
        /// Connections kept open to each host at once (applied through
        /// ``httpClientConfiguration``); requests beyond it wait for one, and that wait counts
        /// against their timeout. A long poll holds its connection until Blitline answers, so a
        /// poller needs one per poll it keeps open, plus the submissions. Default 16.
        public var connectionsPerHost: Int

        /// Creates a configuration; every parameter has the default documented on its property.
        public init(
            apiURL: String = "https://api.blitline.com",
            pollURL: String = "https://cache.blitline.com",
            submitTimeout: Duration = .seconds(30),
            pollTimeout: Duration = .seconds(60),
            connectTimeout: Duration = .seconds(10),
            maxReplyBytes: Int = 4 << 20,
            connectionsPerHost: Int = 16
        ) {
            self.apiURL = Self.trimmingSlash(apiURL)
            self.pollURL = Self.trimmingSlash(pollURL)
            self.submitTimeout = submitTimeout
            self.pollTimeout = pollTimeout
            self.connectTimeout = connectTimeout
            self.maxReplyBytes = maxReplyBytes
            self.connectionsPerHost = max(1, connectionsPerHost)
        }

        /// An `HTTPClient` configuration fit for Blitline: redirects not followed, the connect
        /// timeout applied, up to ``connectionsPerHost`` pooled HTTP/1.1 connections per host.
        public var httpClientConfiguration: HTTPClient.Configuration {
            var configuration = HTTPClient.Configuration(
                redirectConfiguration: .disallow,
                timeout: .init(connect: TimeAmount(self.connectTimeout))
            )
            configuration.httpVersion = .http1Only
            configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = self.connectionsPerHost
            return configuration
        }

        private static func trimmingSlash(_ url: String) -> String {
            url.hasSuffix("/") ? String(url.dropLast()) : url
        }
    }

    /// The configuration in use.
    public let configuration: Configuration
    let httpClient: HTTPClient
    let logger: Logger

    /// Creates a client over a shared `HTTPClient`, which the caller keeps and shuts down.
    public init(httpClient: HTTPClient, configuration: Configuration = Configuration(), logger: Logger) {
        self.httpClient = httpClient
        self.configuration = configuration
        self.logger = logger
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

extension BlitlineClient {
    /// An answer read whole: its status, its headers and its body.
    struct Answer: Sendable {
        let status: Int
        let headers: HTTPHeaders
        let body: ByteBuffer
    }

    /// Sends `request` and reads its answer's body (up to ``Configuration/maxReplyBytes``), all
    /// within `timeout`. The HTTP client's own deadline ends when the answer's head arrives: a
    /// Blitline that sends a head and then stalls would otherwise hold the caller for good. Past
    /// `timeout` the exchange is cancelled, which closes its connection, and this throws
    /// `HTTPClientError.deadlineExceeded`.
    func exchange(_ request: HTTPClientRequest, timeout: Duration) async throws -> Answer {
        try await withThrowingTaskGroup(of: Answer?.self) { group in
            group.addTask {
                let response = try await self.httpClient.execute(request, timeout: TimeAmount(timeout), logger: self.logger)
                let body = try await response.body.collect(upTo: self.configuration.maxReplyBytes)
                return Answer(status: Int(response.status.code), headers: response.headers, body: body)
            }
            group.addTask {
                try await self.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let answer = try await group.next() ?? nil else { throw HTTPClientError.deadlineExceeded }
            return answer
        }
    }

    /// Sleeps on one of the HTTP client's event loops. `Task.sleep`'s timer, cancelled as nearly
    /// every one of these is, still wakes a thread of Swift's global pool when it comes due.
    private func sleep(for duration: Duration) async throws {
        let timer = self.httpClient.eventLoopGroup.any().scheduleTask(in: TimeAmount(duration)) {}
        try await withTaskCancellationHandler {
            try await timer.futureResult.get()
        } onCancel: {
            timer.cancel()
        }
    }
}
