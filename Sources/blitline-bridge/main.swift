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

// Operator tools are subcommands; with none, this is the worker.
if arguments.first == "submit" {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(SubmitCommand.usage, terminator: "")
        exit(0)
    }
    do {
        let command = try SubmitCommand(arguments: arguments.dropFirst())
        let configuration = try BridgeConfiguration(environment: ProcessInfo.processInfo.environment, arguments: [])
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: .warning) }
        exit(try await command.run(configuration: configuration))
    } catch let error as ConfigurationError {
        exitWithReason(error.description, status: 2)
    } catch {
        exitWithReason(String(describing: error), status: 1)
    }
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
// Fine buckets at the low end: postback-to-event latency is a few milliseconds.
metricsFactory.defaultDurationHistogramBuckets = [
    .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(3), .milliseconds(5),
    .milliseconds(7), .milliseconds(10), .milliseconds(15), .milliseconds(20), .milliseconds(30),
    .milliseconds(50), .milliseconds(75), .milliseconds(100), .milliseconds(250), .milliseconds(500),
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
        metricsText: { registry.emitToString() }
    ).run()
} catch {
    exitWithReason(String(describing: error), status: 1)
}
logger.info("stopped after a graceful shutdown")
exit(0)
