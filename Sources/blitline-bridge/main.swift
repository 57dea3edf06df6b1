// The worker's entry point: configuration, the logging and metrics backends, then the bridge.
import BlitlineBridge
import Foundation
import Logging
import Metrics
import Prometheus

/// Writes `blitline-bridge: <reason>` as one line to stderr and exits with `status`.
func exitWithReason(_ reason: String, status: Int32) -> Never {
    let line = reason.split(whereSeparator: \.isNewline).joined(separator: " ")
    FileHandle.standardError.write(Data("blitline-bridge: \(line)\n".utf8))
    exit(status)
}

let arguments = Array(CommandLine.arguments.dropFirst())

/// Runs an operator tool and exits: `--help` prints its usage; a bad argument or setting exits 2
/// with its reason, another failure 1.
func runTool(
    usage: String, settingFlags: [String] = [], _ body: (BridgeConfiguration) async throws -> Int32
) async -> Never {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(usage, terminator: "")
        exit(0)
    }
    do {
        let configuration = try BridgeConfiguration(
            environment: ProcessInfo.processInfo.environment, arguments: settingFlags)
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: .warning) }
        exit(try await body(configuration))
    } catch let error as ConfigurationError {
        exitWithReason(error.description, status: 2)
    } catch {
        exitWithReason(String(describing: error), status: 1)
    }
}

// Operator tools are subcommands; with none, this is the worker.
switch arguments.first {
case "version", "--version":
    print("blitline-bridge \(BridgeVersion.current)")
    exit(0)
case "submit":
    await runTool(usage: SubmitCommand.usage) { configuration in
        try await SubmitCommand(arguments: arguments.dropFirst()).run(configuration: configuration)
    }
case "dead-letters":
    await runTool(usage: DeadLettersCommand.usage) { configuration in
        try await DeadLettersCommand(arguments: arguments.dropFirst()).run(configuration: configuration)
    }
case "check":
    // `check` takes the worker's flags, so that it checks exactly what the worker would run with.
    let flags = arguments.dropFirst()
    await runTool(usage: CheckCommand.usage, settingFlags: flags.filter { $0 != "--json" }) { configuration in
        await CheckCommand(json: flags.contains("--json")).run(configuration: configuration)
    }
default:
    break
}

if BridgeConfiguration.wantsHelp(arguments) {
    print(BridgeConfiguration.helpText, terminator: "")
    exit(0)
}

let configuration: BridgeConfiguration
do {
    configuration = try BridgeConfiguration(environment: ProcessInfo.processInfo.environment, arguments: arguments)
} catch {
    exitWithReason(error.description, status: 2)
}

let logLevel = configuration.logLevel
LoggingSystem.bootstrap(
    { label, metadataProvider in JSONLogHandler(label: label, level: logLevel, metadataProvider: metadataProvider) },
    metadataProvider: nil
)
let registry = PrometheusCollectorRegistry()
var metricsFactory = PrometheusMetricsFactory(registry: registry)
// Fine buckets at the low end (postback-to-event latency is a few milliseconds) and around the
// 50 ms p99 target (README, "Benchmarks"), so that an alert on it is not read between 30 and 75.
metricsFactory.defaultDurationHistogramBuckets = [
    .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(3), .milliseconds(5),
    .milliseconds(7), .milliseconds(10), .milliseconds(15), .milliseconds(20), .milliseconds(30),
    .milliseconds(40), .milliseconds(45), .milliseconds(50), .milliseconds(55), .milliseconds(60), .milliseconds(75), .milliseconds(100), .milliseconds(250), .milliseconds(500),
    .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    .seconds(1800),
]
MetricsSystem.bootstrap(metricsFactory)

let logger = Logger(label: "blitline-bridge")
logger.info(
    "starting",
    metadata: [
        "mode": .string(configuration.usesPostbacks ? "postback" : "polling"),
        "jobs_queue": .string(configuration.jobsQueue),
        "events_exchange": .string(configuration.eventsExchange),
    ]
)

do {
    try await BridgeApp(
        configuration: configuration,
        logger: logger,
        metricsText: { registry.emitToString() + ProcessMetrics.text() }
    ).run()
} catch {
    exitWithReason(String(describing: error), status: 1)
}
logger.info("stopped after a graceful shutdown")
exit(0)
