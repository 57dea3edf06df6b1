import ArgumentParser
import BlitlineSimulator
import Logging

@main
struct SimulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blitline-simulator",
        abstract: "A local stand-in for Blitline's API: submit, processing, postbacks, long polls, fault injection.",
        discussion: """
            ENDPOINTS
            POST /job  Blitline's submit. Form field json= (documented), an
              application/json body {"json": ...}, or a bare job object; one job
              (object) or a batch (array), and the reply mirrors it. A missing or
              not-allowed application_id, or job JSON over --max-job-characters,
              gets {"results":{"error":...}} with a 4xx (per element in a batch).
            GET /listen/{job_id}  Long poll, for jobs without postback_url. Held
              open up to --poll-wait, then an empty 200; once done, the result as
              text/plain ("results" is JSON text for v <= 1.18). Results are kept
              for --result-retention; HTTP 429 (Retry-After: 1) beyond --poll-rate
              per application id (a poll up to 100 ms early for its turn is let in).
            POST /_control  Change faults at run time; JSON body, every key
              optional: fail_submits, fail_submit_fraction, fail_submit_status,
              retry_after_seconds, submit_latency_ms, lose_submit_answers (the next
              N submits accepted and answered as failed), hang_submits, hang_ms,
              drop_postbacks, drop_postback_fraction, duplicate_postbacks,
              duplicate_postback_fraction, postback_delay_ms, hold_postbacks
              (true: no postback goes out until false), reset_stats.
              Answers {"faults":{...}}, the plan in force (also GET /_control).
            GET /_control/stats  Counters: submit_requests, submit_faults,
              jobs_accepted, jobs_rejected, jobs_completed, jobs_failed,
              postbacks_sent, postbacks_acknowledged, postbacks_failed_attempts,
              postbacks_given_up, postbacks_dropped, postbacks_duplicated, polls,
              polls_answered, polls_rate_limited, results_expired_unread,
              result_wait_max_ms.

            PROCESSING
            Unknown function names fail with "Image processing failed. Unknown
            function named 'X'". Each save yields an image sized by its functions'
            params applied to the source: the real size of a PNG, JPEG or GIF
            given as a local path, file:// URL or loopback http URL, else a size
            derived from the URL. Postbacks are JSON for v > 1.17 (with
            postback_headers), the legacy form results= otherwise; retried after
            --postback-retry-delays (1s, 3s, 15s, 10m; times --retry-speed) when
            retry_postback is true and v >= 1.2. Any 2xx is a delivery.

            Durations accept 250ms, 30s, 10m, 1h or bare seconds. Each request is
            logged in one line at info.
            """
    )

    @Option(help: "Address to bind.")
    var host = "127.0.0.1"

    @Option(help: "Port to bind (0 picks a free port and logs it).")
    var port = 8090

    @Option(help: "Time from acceptance to the end of processing.", transform: parseDuration)
    var processingDelay: Duration = .milliseconds(200)

    @Option(help: "Multiplies the postback retry delays (1s, 3s, 15s, 10m); 0.01 makes them 10ms, 30ms, 150ms, 6s.")
    var retrySpeed = 1.0

    @Option(
        help: "The waits before each retry of a failed postback, comma-separated (one retry each), or none.",
        transform: parseDurations)
    var postbackRetryDelays: [Duration] = BlitlineSimulator.Configuration.blitlineRetryDelays

    @Option(help: "The longest a postback attempt waits for an answer.", transform: parseDuration)
    var postbackTimeout: Duration = .seconds(15)

    @Option(help: "Postbacks sent at once, over as many keep-alive connections; the rest wait their turn.")
    var postbackConnections = 32

    @Flag(help: "Send every postback on a connection of its own, closed after the answer.")
    var freshPostbackConnections = false

    @Option(help: "How long GET /listen/{job_id} is held open before an empty 200.", transform: parseDuration)
    var pollWait: Duration = .seconds(30)

    @Option(help: "Polls per second allowed per application id; more get HTTP 429.")
    var pollRate = 5.0

    @Option(help: "How long results stay in the poll cache.", transform: parseDuration)
    var resultRetention: Duration = .seconds(300)

    @Option(name: .customLong("application-id"), help: "An accepted application id (repeatable). Default: any non-empty id.")
    var applicationIDs: [String] = []

    @Option(help: "Job JSON longer than this many characters is refused.")
    var maxJobCharacters = 250_000

    @Option(help: "The next N submits fail with --fail-submit-status and no Blitline error body.")
    var failSubmits = 0

    @Option(help: "Fraction (0-1) of submits that fail that way.")
    var failSubmitFraction = 0.0

    @Option(help: "HTTP status of an injected submit failure (e.g. 500, 503, 429).")
    var failSubmitStatus = 500

    @Option(help: "Retry-After seconds sent with an injected submit failure.")
    var retryAfter: Int?

    @Option(help: "Latency added to every submit.", transform: parseDuration)
    var submitLatency: Duration = .zero

    @Option(help: "The next N submits hang for --hang-duration, then answer 503.")
    var hangSubmits = 0

    @Option(help: "How long a hung submit hangs.", transform: parseDuration)
    var hangDuration: Duration = .seconds(3600)

    @Option(help: "The next N postbacks are never sent.")
    var dropPostbacks = 0

    @Option(help: "Fraction (0-1) of postbacks never sent.")
    var dropPostbackFraction = 0.0

    @Option(help: "The next N postbacks are delivered twice.")
    var duplicatePostbacks = 0

    @Option(help: "Fraction (0-1) of postbacks delivered twice.")
    var duplicatePostbackFraction = 0.0

    @Option(help: "Waited before the first attempt of every postback.", transform: parseDuration)
    var postbackDelay: Duration = .zero

    @Option(help: "trace, debug, info, notice, warning, error or critical. Each request is logged at info.")
    var logLevel = "info"

    func validate() throws {
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        for (name, fraction) in [
            ("--fail-submit-fraction", self.failSubmitFraction), ("--drop-postback-fraction", self.dropPostbackFraction),
            ("--duplicate-postback-fraction", self.duplicatePostbackFraction),
        ] where !(0...1).contains(fraction) {
            throw ValidationError("\(name) must be between 0 and 1")
        }
        guard self.pollRate > 0 else { throw ValidationError("--poll-rate must be positive") }
        guard self.retrySpeed >= 0 else { throw ValidationError("--retry-speed must not be negative") }
        guard self.postbackConnections > 0 else { throw ValidationError("--postback-connections must be positive") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: self.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "blitline-simulator")
        let simulator = BlitlineSimulator(configuration: self.simulatorConfiguration, logger: logger)
        try await simulator.run { port in
            logger.notice("blitline-simulator listening on http://\(self.host):\(port)")
        }
    }
}
