import AMQP
import Blitline
import Foundation
import Logging

/// Every setting of the bridge, with their defaults (README, "Configuration").
///
/// `BridgeConfiguration(environment:arguments:)` reads them from the environment and from the
/// matching flags (`AMQP_URL` ~ `--amqp-url`); see `BridgeConfiguration+Settings.swift`.
public struct BridgeConfiguration: Sendable {
    /// The broker; `amqps://` for TLS.
    public var amqpURL = "amqp://guest:guest@127.0.0.1:5672/%2F"
    /// A PEM CA bundle for `amqps://` (librabbitmq loads no system store).
    public var amqpCAFile: String?
    /// Jobs are submitted with `POST {blitlineAPIURL}/job`.
    public var blitlineAPIURL = "https://api.blitline.com"
    /// Results are polled with `GET {blitlinePollURL}/listen/{job_id}`.
    public var blitlinePollURL = "https://cache.blitline.com"
    /// The longest one submission may take; past it the attempt is a transient failure.
    public var blitlineSubmitTimeout: Duration = .seconds(30)
    /// Used for jobs whose JSON carries no `application_id`.
    public var blitlineApplicationID: String?
    /// The embedded HTTP listener's host and port.
    public var listenHost = "0.0.0.0"
    public var listenPort = 8080
    /// The listener's public base URL as Blitline reaches it; `nil` selects polling mode.
    public var postbackBaseURL: String?
    /// Keys for postback URLs: the first signs, any verifies. Each at least 32 bytes.
    public var postbackSecrets: [String] = []
    public var jobsQueue = "blitline.jobs"
    public var eventsExchange = "blitline.events"
    /// Every event's CloudEvents `source` (`EVENT_SOURCE`), `{vhost}` and `{JOBS_QUEUE}` not yet
    /// replaced; see `eventSourceResolved`.
    public var eventSource = JobEvent.defaultSource
    /// Unacknowledged requests held at once.
    public var prefetch = 64
    /// Tries per request against Blitline's submit endpoint on transient failures.
    public var submitMaxAttempts = 5
    /// A request redelivered more often than this is dead-lettered instead of submitted again.
    public var maxRedeliveries = 5
    /// The type of the bridge's queues.
    var queueType: Topology.QueueType = .quorum
    /// From submission to giving up with a `timeout` failure.
    public var jobTimeout: Duration = .seconds(30 * 60)
    /// From a job's deadline to deciding its timeout: a result received before the deadline has
    /// this long to be confirmed by the broker (the listener answers within 10 s).
    public var timeoutGrace: Duration = .seconds(10)
    /// Polls per second per application id, over all instances together.
    public var pollRate: Double = 5
    /// Long polls open at once; `nil` for as many as `pollRate` needs (see
    /// ``effectivePollConcurrency``).
    public var pollConcurrency: Int?
    /// Larger requests are invalid.
    public var maxRequestBytes = 1_048_576
    /// The longest a graceful shutdown may take.
    public var shutdownTimeout: Duration = .seconds(25)
    /// SwiftNIO event loops (threads) for the HTTP listener, the Blitline client and the work on
    /// requests and postbacks. One keeps a job's steps on one thread, which costs least per job
    /// (README, "Configuration"); more spread the listener's connections and the client's over
    /// more cores.
    public var eventLoops = 1
    public var logLevel: Logger.Level = .info
    /// A separate listener for `/healthz`, `/readyz` and `/metrics`, so that probes never queue
    /// behind postbacks; `nil` serves them on the main listener only.
    public var healthHost: String?
    public var healthPort = 0
    /// The listener's bounds (README, "HTTP listener"); see `HTTPListener.Limits`.
    public var listenMaxConnections = HTTPListener.Limits().maxConnections
    public var listenHeaderTimeout = HTTPListener.Limits().headerTimeout
    public var listenBodyTimeout = HTTPListener.Limits().bodyTimeout
    public var listenMaxBufferedBytes = HTTPListener.Limits().maxBufferedBytes
    public var listenMaxPendingPostbacks = HTTPListener.Limits().maxPendingPostbacks

    public init() {}

    /// The queues and exchange these settings name.
    package var topology: Topology {
        Topology(
            jobsQueue: jobsQueue, eventsExchange: eventsExchange, jobTimeout: jobTimeout, timeoutGrace: timeoutGrace,
            queueType: queueType, eventSource: eventSourceResolved)
    }

    /// `EVENT_SOURCE` with `{vhost}` replaced by the vhost of `AMQP_URL`'s first node as the URL
    /// writes it (percent-encoded: `/` is `%2F`) and `{JOBS_QUEUE}` by the jobs queue's name.
    public var eventSourceResolved: String {
        let vhost = (try? AMQPEndpoints(urls: amqpURL).configurations.first?.virtualHost) ?? "/"
        var unreserved = CharacterSet.alphanumerics
        unreserved.insert(charactersIn: "-._~")
        return eventSource
            .replacingOccurrences(of: "{vhost}", with: vhost.addingPercentEncoding(withAllowedCharacters: unreserved) ?? vhost)
            .replacingOccurrences(of: "{JOBS_QUEUE}", with: jobsQueue)
    }

    /// The listener's bounds as these settings give them.
    public var listenerLimits: HTTPListener.Limits {
        var limits = HTTPListener.Limits()
        limits.maxConnections = listenMaxConnections
        limits.headerTimeout = listenHeaderTimeout
        limits.bodyTimeout = listenBodyTimeout
        limits.maxBufferedBytes = listenMaxBufferedBytes
        limits.maxPendingPostbacks = listenMaxPendingPostbacks
        return limits
    }

    /// Postback mode (`POSTBACK_BASE_URL` set) or polling mode.
    public var usesPostbacks: Bool { postbackBaseURL != nil }

    /// Long polls open at once in polling mode: `pollConcurrency`, or by default as many as polls
    /// going out at `pollRate` (less the margin the bridge keeps) need while Blitline holds each
    /// up to the poll timeout: ⌈`POLL_RATE` × 0.9 × 60 s⌉, 270 at 5 a second; at most 65535 (the
    /// polls queue's prefetch).
    public var effectivePollConcurrency: Int {
        let needed = PollProcessor.concurrency(
            rate: pollRate * PollProcessor.rateMargin, holdTime: BlitlineClient.Configuration().pollTimeout)
        return min(pollConcurrency ?? needed, Int(UInt16.max))
    }

    /// Connections to each Blitline host at once: the long polls (in postback mode only those of
    /// jobs submitted in polling mode), plus 16 for submissions. Only as many are opened as used.
    var blitlineConnectionsPerHost: Int { effectivePollConcurrency + 16 }
}
