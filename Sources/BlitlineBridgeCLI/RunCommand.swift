import AMQP
import ArgumentParser
import BlitlineBridge
import Foundation
import Logging
import Metrics
import OTel
import Prometheus
import ServiceLifecycle
import Tracing

/// `blitline-bridge [run] [--flag value…]`: the worker, until SIGTERM or SIGINT.
///
/// Its flags are the settings table's (`BridgeConfiguration`), which parses them strictly along
/// with the environment; the command line only hands them over.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the worker (the default) until SIGTERM or SIGINT.",
        discussion: BridgeConfiguration.helpText
    )

    @Argument(
        parsing: .allUnrecognized,
        help: ArgumentHelp("Settings as flags, each overriding its variable (below).", valueName: "--flag value"),
        completion: .list(BridgeConfiguration.flags)
    )
    var settings: [String] = []

    func run() async throws {
        let configuration = try BridgeConfiguration(
            environment: ProcessInfo.processInfo.environment, arguments: settings)
        let environment = ProcessInfo.processInfo.environment
        let logLevel = configuration.logLevel
        let tracing = Self.tracesExported(environment)
        LoggingSystem.bootstrap(
            { label, metadataProvider in
                JSONLogHandler(label: label, level: logLevel, metadataProvider: metadataProvider)
            },
            // Every line logged inside a span names its trace and span.
            metadataProvider: tracing ? OTel.makeLoggingMetadataProvider() : nil
        )
        let registry = PrometheusCollectorRegistry()
        var metricsFactory = PrometheusMetricsFactory(registry: registry)
        metricsFactory.defaultDurationHistogramBuckets = Self.durationBuckets
        MetricsSystem.bootstrap(metricsFactory)

        let logger = Logger(label: "blitline-bridge")
        var background: [any Service] = []
        if tracing {
            var otel = OTel.Configuration.default
            otel.serviceName = "blitline-bridge"
            otel.resourceAttributes["service.version"] = BridgeVersion.current
            otel.logs.enabled = false
            otel.metrics.enabled = false
            otel.diagnosticLogger = .custom(Logger(label: "otel"))
            let backend = try OTel.makeTracingBackend(configuration: otel)
            InstrumentationSystem.bootstrap(backend.factory)
            background.append(backend.service)
        }
        logger.info(
            "starting",
            metadata: [
                "mode": .string(configuration.usesPostbacks ? "postback" : "polling"),
                "jobs_queue": .string(configuration.jobsQueue),
                "events_exchange": .string(configuration.eventsExchange),
            ]
        )
        try await BridgeApp(
            configuration: configuration,
            logger: logger,
            metricsText: { registry.emitToString() + ProcessMetrics.text() },
            backgroundServices: background
        ).run()
        logger.info("stopped after a graceful shutdown")
    }

    /// Whether spans go to an OTLP collector: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its
    /// traces-only form) names one and `OTEL_SDK_DISABLED` does not say otherwise.
    static func tracesExported(_ environment: [String: String]) -> Bool {
        let endpoint = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"].contains {
            !(environment[$0] ?? "").isEmpty
        }
        return endpoint && environment["OTEL_SDK_DISABLED"]?.lowercased() != "true"
            && environment["OTEL_TRACES_EXPORTER"]?.lowercased() != "none"
    }

    /// Fine buckets at the low end (postback-to-event latency is a few milliseconds) and around the
    /// 50 ms p99 target (README, "Benchmarks"), so that an alert on it is not read between 30 and 75.
    static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(3), .milliseconds(5),
        .milliseconds(7), .milliseconds(10), .milliseconds(15), .milliseconds(20), .milliseconds(30),
        .milliseconds(40), .milliseconds(45), .milliseconds(50), .milliseconds(55), .milliseconds(60),
        .milliseconds(75), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
        .seconds(1800),
    ]
}

/// The settings `submit` and `dead-letters` use, as flags that override their variables just as
/// the worker's do; parsed, like the worker's, by the settings table.
struct BrokerSettings: ParsableArguments {
    @Option(name: .customLong("amqp-url"), help: ArgumentHelp("Overrides AMQP_URL.", valueName: "url"))
    var amqpURL: String?

    @Option(name: .customLong("amqp-ca-file"), help: ArgumentHelp("Overrides AMQP_CA_FILE.", valueName: "path"))
    var amqpCAFile: String?

    @Option(name: .customLong("jobs-queue"), help: ArgumentHelp("Overrides JOBS_QUEUE.", valueName: "name"))
    var jobsQueue: String?

    /// As the worker's flags.
    var flags: [String] {
        [("--amqp-url", amqpURL), ("--amqp-ca-file", amqpCAFile), ("--jobs-queue", jobsQueue)]
            .compactMap { flag, value in value.map { "\(flag)=\($0)" } }
    }
}

/// The worker's settings as flags, after an operator tool's name (`check`, `migrate`).
struct WorkerSettings: ParsableArguments {
    @Argument(
        parsing: .allUnrecognized,
        help: ArgumentHelp("The worker's settings as flags (blitline-bridge run --help).", valueName: "--flag value"),
        completion: .list(BridgeConfiguration.flags)
    )
    var flags: [String] = []
}

/// What every operator tool does first: reads the worker's configuration from the environment
/// and the flags given (the worker's own, as the settings table reads them), and logs only
/// warnings, as JSON on stderr.
func toolConfiguration(settings: [String] = []) throws -> BridgeConfiguration {
    let configuration = try BridgeConfiguration(environment: ProcessInfo.processInfo.environment, arguments: settings)
    LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: .warning) }
    return configuration
}

/// Connects as the operator tool `name` (the connection's name says so), runs `body`, and closes
/// the connection whatever `body` did.
func withToolConnection<T>(
    _ configuration: BridgeConfiguration, name: String, _ body: (AMQPConnection) async throws -> T
) async throws -> T {
    let connection = try await configuration.connectToBroker(connectionName: "blitline-bridge \(name)").connection
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}
