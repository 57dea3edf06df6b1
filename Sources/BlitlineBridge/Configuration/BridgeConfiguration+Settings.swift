import AMQP
import Blitline
import Foundation
import Logging

/// Why the configuration cannot be used: names the variable, its flag and the accepted form.
///
/// `description` is one line and never contains a secret (`POSTBACK_SECRET`,
/// `BLITLINE_APPLICATION_ID`, the password of `AMQP_URL`).
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of problem.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidValue, missingValue, unknownFlag, unexpectedArgument
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A value is not of the accepted form.
        public static let invalidValue = Code(.invalidValue)
        /// A required value is absent (a flag without value, or a setting another one requires).
        public static let missingValue = Code(.missingValue)
        /// A flag that no setting has.
        public static let unknownFlag = Code(.unknownFlag)
        /// An argument that is not a flag.
        public static let unexpectedArgument = Code(.unexpectedArgument)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// The kind of problem.
    public var code: Code
    /// The environment variable concerned, if the problem belongs to one.
    public var variable: String?
    /// The whole one-line message, e.g.
    /// `JOB_TIMEOUT (--job-timeout): "soon" is not a duration; use 250ms, 30s, 10m, 1h or bare seconds`.
    public var message: String

    /// Creates an error with its full message.
    public init(_ code: Code, variable: String?, message: String) {
        self.code = code
        self.variable = variable
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

extension BridgeConfiguration {
    /// Reads every setting from `environment`, with flags in `arguments` overriding their variable.
    ///
    /// Flags are the variables' names in lower case with dashes (`AMQP_URL` ~ `--amqp-url`) and take
    /// `--flag value` or `--flag=value`. An empty value stands for the default. Unknown flags, stray
    /// arguments and values not of the accepted form throw; `--help` is for ``wantsHelp(_:)``.
    public init(environment: [String: String], arguments: [String]) throws(ConfigurationError) {
        self.init()
        let flagged = try Self.flagValues(arguments)
        func value(_ variable: String) -> String? {
            (flagged[variable] ?? environment[variable]).flatMap { $0.isEmpty ? nil : $0 }
        }
        for setting in Self.settings {
            guard let value = value(setting.variable) else { continue }
            try setting.apply(&self, value)
        }
        for variable in Self.secretVariables where value(variable) != nil && value(variable + "_FILE") != nil {
            throw Self.setting(named: variable + "_FILE").failure(
                "set either \(variable) or \(variable)_FILE, not both", code: .unexpectedArgument)
        }
        if (jobTimeout + timeoutGrace).milliseconds > Self.longestMessageTTL {
            throw Self.setting(named: "JOB_TIMEOUT").failure(
                "with TIMEOUT_GRACE it is \((jobTimeout + timeoutGrace).milliseconds) ms, the message TTL of the "
                    + "deadlines queue; at most \(Self.longestMessageTTL) ms (about 49.7 days) is taken")
        }
        if postbackBaseURL != nil, postbackSecrets.isEmpty {
            let secret = Self.setting(named: "POSTBACK_SECRET")
            throw secret.failure("required when POSTBACK_BASE_URL is set; \(secret.form)", code: .missingValue)
        }
    }

    /// The longest `x-message-ttl` the bridge declares, in milliseconds (2³² − 1, about 49.7 days).
    /// Brokers refuse longer ones from some length on (RabbitMQ 3.10 past about 2³⁸ ms) with a 406
    /// at start-up that would not name the setting.
    static let longestMessageTTL: Int64 = 4_294_967_295

    /// Every setting with its flag, default, meaning and accepted form, laid out for 80 columns:
    /// the worker's `--help`.
    public static var helpText: String {
        let defaults = BridgeConfiguration()
        var lines = [
            "Every setting is read from its environment variable; the matching flag",
            "(--flag value or --flag=value) overrides it. An empty value stands for the",
            "default. A bad value exits 2 naming the variable and the flag.",
            "",
            "Settings:",
        ]
        for setting in settings {
            lines.append("  \(setting.variable), \(setting.flag) \(setting.placeholder)")
            lines += wrapped(sentence(setting.meaning), indent: 6)
            lines += wrapped(sentence("Form: " + setting.form), indent: 6)
            lines.append("      Default: \(setting.defaultValue(defaults) ?? "none")")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Every setting's flag, for shell completion.
    public static var flags: [String] { settings.map(\.flag) }

    /// The settings whose values are secrets: they are never printed, placeholders marked
    /// `REPLACE_ME` are refused, and each can be read from a file (`{VARIABLE}_FILE`).
    static let secretVariables = ["AMQP_URL", "BLITLINE_APPLICATION_ID", "POSTBACK_SECRET"]

    static func setting(named variable: String) -> Setting {
        settings.first { $0.variable == variable }!
    }

    /// Splits `--flag value` and `--flag=value` into values by variable name.
    private static func flagValues(_ arguments: [String]) throws(ConfigurationError) -> [String: String] {
        var values: [String: String] = [:]
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                throw ConfigurationError(
                    .unexpectedArgument, variable: nil,
                    message: "unexpected argument \(quoted(argument)); settings are flags like --amqp-url, see blitline-bridge run --help")
            }
            var name = Substring(argument)
            var value: String?
            if let equals = argument.firstIndex(of: "=") {
                name = argument[..<equals]
                value = String(argument[argument.index(after: equals)...])
            }
            guard let setting = settings.first(where: { $0.flag == name }) else {
                throw ConfigurationError(
                    .unknownFlag, variable: nil, message: "unknown flag \(name); blitline-bridge run --help lists the settings")
            }
            if value == nil {
                guard index < arguments.endIndex, !arguments[index].hasPrefix("--") else {
                    throw setting.failure("the flag needs a value; \(setting.form)", code: .missingValue)
                }
                value = arguments[index]
                index += 1
            }
            values[setting.variable] = value
        }
        return values
    }

    private static func sentence(_ text: String) -> String {
        text.hasSuffix(".") ? text : text + "."
    }

    private static func wrapped(_ text: String, indent: Int, width: Int = 79) -> [String] {
        let margin = String(repeating: " ", count: indent)
        var lines: [String] = []
        var line = margin
        for word in text.split(separator: " ") {
            if line.count > indent, line.count + 1 + word.count > width {
                lines.append(line)
                line = margin
            }
            line += (line.count > indent ? " " : "") + word
        }
        lines.append(line)
        return lines
    }
}

extension BridgeConfiguration: CustomStringConvertible {
    /// Every setting as `VARIABLE=value`, with secrets shown as `(set)` and the broker password as
    /// `***`, so that a configuration may be logged (service-lifecycle logs services this way).
    public var description: String {
        let values = Self.settings.map { setting -> String in
            let value: String?
            switch setting.variable {
            case "AMQP_URL": value = redactingPasswords(amqpURL)
            case "BLITLINE_APPLICATION_ID": value = blitlineApplicationID.map { _ in "(set)" }
            case "POSTBACK_SECRET": value = postbackSecrets.isEmpty ? nil : "(\(postbackSecrets.count) set)"
            default: value = setting.defaultValue(self)
            }
            return "\(setting.variable)=\(value ?? "none")"
        }
        return "BridgeConfiguration(\(values.joined(separator: ", ")))"
    }
}

// MARK: - The table

extension BridgeConfiguration {
    /// One setting: its variable, how help shows it, and how a value is parsed into the configuration.
    struct Setting: Sendable {
        /// The environment variable, e.g. `AMQP_URL`.
        let variable: String
        /// Shown after the flag in help, e.g. `<duration>`.
        let placeholder: String
        /// What it means.
        let meaning: String
        /// The accepted form, as help and errors phrase it.
        let form: String
        /// The default as help shows it; `nil` for none.
        let defaultValue: @Sendable (BridgeConfiguration) -> String?
        /// Parses a non-empty value into the configuration.
        let parse: @Sendable (inout BridgeConfiguration, String, Setting) throws(ConfigurationError) -> Void

        /// The flag: `AMQP_URL` ~ `--amqp-url`.
        var flag: String { "--" + variable.lowercased().replacingOccurrences(of: "_", with: "-") }

        func apply(_ configuration: inout BridgeConfiguration, _ value: String) throws(ConfigurationError) {
            try parse(&configuration, value, self)
        }

        /// An error that starts with `VARIABLE (--flag): `.
        func failure(_ text: String, code: ConfigurationError.Code = .invalidValue) -> ConfigurationError {
            ConfigurationError(code, variable: variable, message: "\(variable) (\(flag)): \(text)")
        }

        /// `"value" is not <what>; <form>` for settings whose values may be shown.
        func invalid(_ value: String, _ what: String) -> ConfigurationError {
            failure("\(quoted(value)) is not \(what); \(form)")
        }
    }

    static let settings: [Setting] = [
        Setting(
            variable: "AMQP_URL", placeholder: "<url>[,<url>...]",
            meaning: "The broker; amqps:// for TLS with the peer verified. Several URLs separated by "
                + "commas are the nodes of one cluster: the bridge starts at a random one and moves to the "
                + "next on any connection failure",
            form: "use amqp://user:password@host:port/vhost or amqps://..., with / in the vhost as %2F "
                + "and / ? # @ , in the user or password percent-encoded, several separated by commas",
            defaultValue: { $0.amqpURL },
            parse: { configuration, value, setting throws(ConfigurationError) in
                try refusingPlaceholder(value, setting)
                do throws(AMQPError) {
                    _ = try AMQPEndpoints(urls: value)
                } catch {
                    // Neither the value nor the AMQP module's error quotes the URL: where a URL does
                    // not parse, a password in it cannot be told apart to be hidden.
                    throw setting.failure("the value is not a broker URL (\(error.replyText)); \(setting.form)")
                }
                configuration.amqpURL = value
            }
        ),
        Setting(
            variable: "AMQP_CA_FILE", placeholder: "<path>",
            meaning: "A PEM bundle of the CAs that verify the broker's certificate with amqps://; by default the system's "
                + "bundle (SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt or the distribution's own)",
            form: "use the path of a readable PEM file",
            defaultValue: { $0.amqpCAFile },
            parse: { configuration, value, setting throws(ConfigurationError) in
                guard FileManager.default.isReadableFile(atPath: value) else {
                    throw setting.failure("\(quoted(value)) cannot be read; \(setting.form)")
                }
                configuration.amqpCAFile = value
            }
        ),
        Setting(
            variable: "BLITLINE_API_URL", placeholder: "<url>",
            meaning: "Blitline's submit API; jobs are submitted with POST {BLITLINE_API_URL}/job",
            form: "use an absolute http:// or https:// URL",
            defaultValue: { $0.blitlineAPIURL },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.blitlineAPIURL = try httpURL(value, setting)
            }
        ),
        Setting(
            variable: "BLITLINE_POLL_URL", placeholder: "<url>",
            meaning: "Blitline's result cache; results are polled with GET {BLITLINE_POLL_URL}/listen/{job_id}",
            form: "use an absolute http:// or https:// URL",
            defaultValue: { $0.blitlinePollURL },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.blitlinePollURL = try httpURL(value, setting)
            }
        ),
        Setting(
            variable: "BLITLINE_SUBMIT_TIMEOUT", placeholder: "<duration>",
            meaning: "The longest one submission to Blitline may take before it counts as a transient failure",
            form: "use 250ms, 30s, 10m, 1h or bare seconds",
            defaultValue: { DurationText.text($0.blitlineSubmitTimeout) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.blitlineSubmitTimeout = try duration(value, setting)
            }
        ),
        Setting(
            variable: "BLITLINE_APPLICATION_ID", placeholder: "<id>",
            meaning: "Blitline application id for jobs whose JSON carries no application_id",
            form: "use your Blitline application id",
            defaultValue: { _ in nil },
            parse: { configuration, value, setting throws(ConfigurationError) in
                try refusingPlaceholder(value, setting)
                configuration.blitlineApplicationID = value
            }
        ),
        Setting(
            variable: "LISTEN_ADDRESS", placeholder: "<host:port>",
            meaning: "The embedded HTTP listener: postbacks, /healthz, /readyz, /metrics",
            form: "use host:port, e.g. 0.0.0.0:8080, 127.0.0.1:8080 or [::]:8080 (port 0 to 65535)",
            defaultValue: { configuration in
                let host = configuration.listenHost
                return "\(host.contains(":") ? "[\(host)]" : host):\(configuration.listenPort)"
            },
            parse: { configuration, value, setting throws(ConfigurationError) in
                (configuration.listenHost, configuration.listenPort) = try listenAddress(value, setting)
            }
        ),
        Setting(
            variable: "POSTBACK_BASE_URL", placeholder: "<url>",
            meaning: "The listener's public base URL as Blitline reaches it; a path in it prefixes the "
                + "postback route. Unset: polling mode",
            form: "use an absolute http:// or https:// URL without query, e.g. https://bridge.example.com/blitline",
            defaultValue: { $0.postbackBaseURL },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.postbackBaseURL = try httpURL(value, setting)
            }
        ),
        Setting(
            variable: "POSTBACK_SECRET", placeholder: "<secret>[,<secret>...]",
            meaning: "Keys that sign postback URLs: the first signs, any verifies (rotate by putting "
                + "the new one first). Required with POSTBACK_BASE_URL",
            form: "use one or more secrets of at least 32 bytes each, separated by commas",
            defaultValue: { _ in nil },
            parse: { configuration, value, setting throws(ConfigurationError) in
                try refusingPlaceholder(value, setting)
                var secrets: [String] = []
                for (position, item) in value.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
                    let secret = item.trimmingCharacters(in: .whitespacesAndNewlines)
                    guard secret.utf8.count >= 32 else {
                        throw setting.failure(
                            "secret \(position + 1) is \(secret.utf8.count) bytes long; \(setting.form)")
                    }
                    secrets.append(secret)
                }
                configuration.postbackSecrets = secrets
            }
        ),
        Setting(
            variable: "JOBS_QUEUE", placeholder: "<name>",
            meaning: "The queue where job requests arrive; the bridge's own queues are named after it",
            form: "use a queue name of 1 to 200 bytes that does not start with amq.",
            defaultValue: { $0.jobsQueue },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.jobsQueue = try brokerName(value, setting)
            }
        ),
        Setting(
            variable: "EVENTS_EXCHANGE", placeholder: "<name>",
            meaning: "The topic exchange that events are published to",
            form: "use an exchange name of 1 to 200 bytes that does not start with amq.",
            defaultValue: { $0.eventsExchange },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.eventsExchange = try brokerName(value, setting)
            }
        ),
        Setting(
            variable: "EVENT_SOURCE", placeholder: "<uri-reference>",
            meaning: "The CloudEvents source of every event; {vhost} and {JOBS_QUEUE} in it are replaced by the "
                + "broker's vhost and the jobs queue's name (e.g. /blitline-bridge/{vhost}/{JOBS_QUEUE}, so that "
                + "deployments whose request ids overlap emit distinct source and id pairs)",
            form: "use a URI reference of 1 to 255 bytes without spaces or control characters",
            defaultValue: { $0.eventSource },
            parse: { configuration, value, setting throws(ConfigurationError) in
                guard value.utf8.count <= 255, !value.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } == true })
                else { throw setting.failure("\(quoted(value)) is not a URI reference; \(setting.form)") }
                configuration.eventSource = value
            }
        ),
        Setting(
            variable: "PREFETCH", placeholder: "<count>",
            meaning: "Unacknowledged requests held at once",
            form: "use a whole number from 1 to 65535",
            defaultValue: { String($0.prefetch) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.prefetch = try integer(value, setting, in: 1...65535)
            }
        ),
        Setting(
            variable: "EVENT_LOOPS", placeholder: "<count>",
            meaning: "Threads for the HTTP listener, the Blitline client and the work on requests and "
                + "postbacks; one costs least per job, more spread the listener's connections over more cores",
            form: "use a whole number from 1 to 256",
            defaultValue: { String($0.eventLoops) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.eventLoops = try integer(value, setting, in: 1...256)
            }
        ),
        Setting(
            variable: "SUBMIT_MAX_ATTEMPTS", placeholder: "<count>",
            meaning: "Tries per request against Blitline's submit endpoint on transient failures",
            form: "use a whole number from 1 to 1000",
            defaultValue: { String($0.submitMaxAttempts) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.submitMaxAttempts = try integer(value, setting, in: 1...1000)
            }
        ),
        Setting(
            variable: "MAX_REDELIVERIES", placeholder: "<count>",
            meaning: "A request the broker redelivers more often than this (the bridge lost the broker "
                + "or died while holding it each time) goes to JOBS_QUEUE.dead instead of being submitted again",
            form: "use a whole number from 0 to 19",
            defaultValue: { String($0.maxRedeliveries) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.maxRedeliveries = try integer(value, setting, in: 0...(Topology.deliveryLimit - 1))
            }
        ),
        Setting(
            variable: "QUEUE_TYPE", placeholder: "quorum|classic",
            meaning: "The type of every queue the bridge declares (the outcomes stream stays a stream): quorum "
                + "queues are replicated over a cluster and dead-letter at least once; classic keeps the "
                + "queues of earlier versions",
            form: "use quorum or classic",
            defaultValue: { $0.queueType.rawValue },
            parse: { configuration, value, setting throws(ConfigurationError) in
                guard let type = Topology.QueueType(rawValue: value.lowercased()) else {
                    throw setting.invalid(value, "a queue type")
                }
                configuration.queueType = type
            }
        ),
        Setting(
            variable: "JOB_TIMEOUT", placeholder: "<duration>",
            meaning: "From submission to giving up with a timeout failure event",
            form: "use 250ms, 30s, 10m, 1h or bare seconds",
            defaultValue: { DurationText.text($0.jobTimeout) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.jobTimeout = try duration(value, setting)
            }
        ),
        Setting(
            variable: "TIMEOUT_GRACE", placeholder: "<duration>",
            meaning: "How long after a job's deadline its timeout is decided, so that a result "
                + "received before the deadline and still being published wins",
            form: "use 250ms, 10s or bare seconds",
            defaultValue: { DurationText.text($0.timeoutGrace) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.timeoutGrace = try duration(value, setting)
            }
        ),
        Setting(
            variable: "POLL_RATE", placeholder: "<per-second>",
            meaning: "Polls per second per application id at most, over all instances together "
                + "(polling mode)",
            form: "use a number greater than 0, e.g. 5 or 0.5",
            defaultValue: { numberText($0.pollRate) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                guard let rate = DurationText.decimal(value), rate > 0, rate.isFinite else {
                    throw setting.invalid(value, "a rate")
                }
                configuration.pollRate = rate
            }
        ),
        Setting(
            variable: "POLL_CONCURRENCY", placeholder: "<polls>",
            meaning: "Long polls open at once (polling mode). Unset: as many as POLL_RATE needs while "
                + "Blitline holds each poll up to 60 s, ⌈POLL_RATE × 0.9 × 60⌉ (270 at 5/s); raise it "
                + "when several application ids are polled at once",
            form: "use a whole number from 1 to 65535",
            defaultValue: { _ in nil },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.pollConcurrency = try integer(value, setting, in: 1...65535)
            }
        ),
        Setting(
            variable: "MAX_REQUEST_BYTES", placeholder: "<bytes>",
            meaning: "Larger job requests are invalid",
            form: "use a whole number of bytes, at least 1",
            defaultValue: { String($0.maxRequestBytes) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.maxRequestBytes = try integer(value, setting, in: 1...Int.max)
            }
        ),
        Setting(
            variable: "SHUTDOWN_TIMEOUT", placeholder: "<duration>",
            meaning: "The longest a graceful shutdown on SIGTERM or SIGINT may take",
            form: "use 250ms, 30s, 10m, 1h or bare seconds",
            defaultValue: { DurationText.text($0.shutdownTimeout) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.shutdownTimeout = try duration(value, setting)
            }
        ),
        Setting(
            variable: "LOG_LEVEL", placeholder: "<level>",
            meaning: "The least severe level logged; logs are JSON lines on stderr",
            form: "use trace, debug, info, notice, warning, error or critical",
            defaultValue: { $0.logLevel.rawValue },
            parse: { configuration, value, setting throws(ConfigurationError) in
                guard let level = Logger.Level(rawValue: value.lowercased()) else {
                    throw setting.invalid(value, "a log level")
                }
                configuration.logLevel = level
            }
        ),
        Setting(
            variable: "HEALTH_ADDRESS", placeholder: "<host:port>",
            meaning: "A separate listener for /healthz, /readyz and /metrics, so that probes never queue "
                + "behind postbacks. Unset: they are served on LISTEN_ADDRESS only",
            form: "use host:port, e.g. 0.0.0.0:8081, 127.0.0.1:8081 or [::]:8081 (port 0 to 65535)",
            defaultValue: { configuration in
                configuration.healthHost.map { host in
                    "\(host.contains(":") ? "[\(host)]" : host):\(configuration.healthPort)"
                }
            },
            parse: { configuration, value, setting throws(ConfigurationError) in
                let (host, port) = try listenAddress(value, setting)
                (configuration.healthHost, configuration.healthPort) = (host, port)
            }
        ),
        Setting(
            variable: "LISTEN_MAX_CONNECTIONS", placeholder: "<count>",
            meaning: "Connections the listener keeps open at once; more wait in the kernel's accept queue",
            form: "use a whole number from 1 to 65535",
            defaultValue: { String($0.listenMaxConnections) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.listenMaxConnections = try integer(value, setting, in: 1...65535)
            }
        ),
        Setting(
            variable: "LISTEN_HEADER_TIMEOUT", placeholder: "<duration>",
            meaning: "The longest a client may take to send a request head, from connecting or from "
                + "its previous answer; slower connections are cut",
            form: "use 250ms, 30s, 10m, 1h or bare seconds",
            defaultValue: { DurationText.text($0.listenHeaderTimeout) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.listenHeaderTimeout = try duration(value, setting)
            }
        ),
        Setting(
            variable: "LISTEN_BODY_TIMEOUT", placeholder: "<duration>",
            meaning: "The longest a client may take to send a request body after its head; slower "
                + "connections are cut",
            form: "use 250ms, 30s, 10m, 1h or bare seconds",
            defaultValue: { DurationText.text($0.listenBodyTimeout) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.listenBodyTimeout = try duration(value, setting)
            }
        ),
        Setting(
            variable: "LISTEN_MAX_BUFFERED_BYTES", placeholder: "<bytes>",
            meaning: "Postback body bytes held at once over all connections; a postback past it is "
                + "answered 503 and Blitline retries",
            form: "use a whole number of bytes, at least 8388608 (one postback of the largest size)",
            defaultValue: { String($0.listenMaxBufferedBytes) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.listenMaxBufferedBytes = try integer(value, setting, in: (8 << 20)...Int.max)
            }
        ),
        Setting(
            variable: "LISTEN_MAX_PENDING_POSTBACKS", placeholder: "<count>",
            meaning: "Postbacks handled at once, those waiting on the broker included; more are "
                + "answered 503 at once and Blitline retries",
            form: "use a whole number from 1 to 65535",
            defaultValue: { String($0.listenMaxPendingPostbacks) },
            parse: { configuration, value, setting throws(ConfigurationError) in
                configuration.listenMaxPendingPostbacks = try integer(value, setting, in: 1...65535)
            }
        ),
        // The secrets read from files (Kubernetes and Docker secrets); after the settings they stand for.
        fileSetting(for: "AMQP_URL"),
        fileSetting(for: "BLITLINE_APPLICATION_ID"),
        fileSetting(for: "POSTBACK_SECRET"),
    ]
}

// MARK: - Value forms

extension BridgeConfiguration {
    private static func integer(
        _ value: String, _ setting: Setting, in range: ClosedRange<Int>
    ) throws(ConfigurationError) -> Int {
        guard isDigits(value), let number = Int(value), range.contains(number) else {
            let what = range.upperBound == Int.max
                ? "a whole number of at least \(range.lowerBound)"
                : "a whole number from \(range.lowerBound) to \(range.upperBound)"
            throw setting.invalid(value, what)
        }
        return number
    }

    private static func isDigits(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// `2` for 2.0, `0.5` for 0.5.
    private static func numberText(_ number: Double) -> String {
        number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
    }

    /// A duration as ``DurationText`` reads it; greater than zero.
    private static func duration(_ value: String, _ setting: Setting) throws(ConfigurationError) -> Duration {
        do {
            return try DurationText.parse(value)
        } catch .notADuration {
            throw setting.invalid(value, "a duration")
        } catch {
            throw setting.failure("\(quoted(value)) \(error); \(setting.form)")
        }
    }

    /// An absolute `http(s)://` URL with a host and neither query nor fragment, trailing slashes
    /// removed (paths are appended to it).
    private static func httpURL(_ value: String, _ setting: Setting) throws(ConfigurationError) -> String {
        guard let components = URLComponents(string: value),
            let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = components.host, !host.isEmpty
        else {
            throw setting.invalid(value, "an absolute http(s) URL")
        }
        guard components.query == nil, components.fragment == nil else {
            throw setting.failure("\(quoted(value)) has a query or fragment; \(setting.form)")
        }
        var url = value
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    /// `host:port`, `[v6]:port` or `:port` (all interfaces).
    private static func listenAddress(_ value: String, _ setting: Setting) throws(ConfigurationError) -> (String, Int) {
        var host: Substring
        var port: Substring
        if value.hasPrefix("[") {
            guard let close = value.firstIndex(of: "]"), value[value.index(after: close)...].hasPrefix(":") else {
                throw setting.invalid(value, "a listen address")
            }
            host = value[value.index(after: value.startIndex)..<close]
            port = value[value.index(close, offsetBy: 2)...]
            guard host.contains(":") else { throw setting.invalid(value, "a listen address") }
        } else {
            guard let colon = value.lastIndex(of: ":") else { throw setting.invalid(value, "a listen address") }
            host = value[..<colon]
            port = value[value.index(after: colon)...]
            guard !host.contains(":") else {
                throw setting.failure(
                    "\(quoted(value)) is not a listen address (write IPv6 hosts in brackets); \(setting.form)")
            }
            if host.isEmpty { host = "0.0.0.0" }
        }
        guard !host.isEmpty, isDigits(port), let number = Int(port), (0...65535).contains(number) else {
            throw setting.invalid(value, "a listen address")
        }
        return (String(host), number)
    }

    private static func brokerName(_ value: String, _ setting: Setting) throws(ConfigurationError) -> String {
        guard value.utf8.count <= 200 else {
            throw setting.failure("the name is \(value.utf8.count) bytes long; \(setting.form)")
        }
        guard !value.hasPrefix("amq.") else {
            throw setting.failure("\(quoted(value)) is reserved by the broker; \(setting.form)")
        }
        return value
    }
}

/// Refuses a secret that is still a placeholder of the deploy folder's examples.
private func refusingPlaceholder(_ value: String, _ setting: BridgeConfiguration.Setting) throws(ConfigurationError) {
    let lowercased = value.lowercased()
    if lowercased.contains("replace_me") || lowercased.contains("replace-me") {
        throw setting.failure("is still a placeholder (it says REPLACE_ME); set the real value")
    }
}

extension BridgeConfiguration {
    /// `{VARIABLE}_FILE`: the value of `variable` read from a file, without its trailing newline.
    fileprivate static func fileSetting(for variable: String) -> Setting {
        Setting(
            variable: variable + "_FILE", placeholder: "<path>",
            meaning: "Read \(variable) from this file (a Kubernetes or Docker secret); not together with \(variable)",
            form: "use the path of a readable file that holds the value",
            defaultValue: { _ in nil },
            parse: { configuration, path, setting throws(ConfigurationError) in
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw setting.failure("cannot read \(quoted(path)); \(setting.form)")
                }
                var value = String(decoding: data, as: UTF8.self)
                while let last = value.last, last.isNewline || last == " " { value.removeLast() }
                guard !value.isEmpty else { throw setting.failure("\(quoted(path)) is empty") }
                do throws(ConfigurationError) {
                    try BridgeConfiguration.setting(named: variable).apply(&configuration, value)
                } catch {
                    // The message names the variable the file stands for; the value is never shown.
                    throw setting.failure("the value in \(quoted(path)) is not accepted: \(error.description)")
                }
            }
        )
    }
}

/// A value for a message: quoted, shortened, control characters escaped.
private func quoted(_ value: some StringProtocol) -> String {
    var text = value.count > 120 ? String(value.prefix(117)) + "…" : String(value)
    text = text.unicodeScalars.map { $0.value < 0x20 || $0 == "\"" ? $0.escaped(asASCII: true) : String($0) }.joined()
    return "\"\(text)\""
}

/// The password part of `scheme://user:password@host…`, if any.
private func password(in url: String) -> Substring? {
    let afterScheme = url.range(of: "://").map { url[$0.upperBound...] } ?? url[...]
    let authority = afterScheme.prefix { $0 != "/" && $0 != "?" }
    guard let at = authority.lastIndex(of: "@") else { return nil }
    let userInfo = authority[..<at]
    guard let colon = userInfo.firstIndex(of: ":") else { return nil }
    return userInfo[userInfo.index(after: colon)...]
}

/// `url` with its password replaced by `***`.
private func redactingPassword(_ url: some StringProtocol) -> String {
    let url = String(url)
    guard let secret = password(in: url) else { return url }
    return url.replacingCharacters(in: secret.startIndex..<secret.endIndex, with: "***")
}

/// Each of the comma-separated URLs with its password replaced by `***`.
func redactingPasswords(_ urls: String) -> String {
    urls.split(separator: ",", omittingEmptySubsequences: false).map(redactingPassword).joined(separator: ",")
}
