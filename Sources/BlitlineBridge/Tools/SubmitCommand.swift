import AMQP
import Blitline
import Foundation
import Synchronization

/// `blitline-bridge submit FILE… [--wait] [--timeout 60s]`: publishes job files as requests (the
/// file name without extension is the message id) and, with `--wait`, prints each one's event as it
/// comes, through a `reply_to` queue of its own.
public struct SubmitCommand: Sendable {
    public var files: [String] = []
    public var wait = false
    public var timeout: Duration = .seconds(120)

    /// Usage, for `--help` and mistakes.
    public static let usage = """
        usage: blitline-bridge submit FILE... [--wait] [--timeout DURATION]

        Publishes each FILE (one Blitline job as JSON) to JOBS_QUEUE as a request whose message id
        is the file name without its extension. With --wait, prints each request's event as it
        arrives and exits 1 if any failed (or did not arrive within --timeout, default 120s).
        Uses AMQP_URL and JOBS_QUEUE from the environment, as the worker does.

        """

    public init(arguments: ArraySlice<String>) throws(ConfigurationError) {
        var arguments = arguments
        while let argument = arguments.popFirst() {
            switch argument {
            case "--wait": wait = true
            case "--timeout":
                guard let value = arguments.popFirst(), let duration = try? BridgeConfiguration.parseDuration(value) else {
                    throw ConfigurationError(
                        .invalidValue, variable: nil, message: "--timeout takes a duration such as 30s, 2m or 1h")
                }
                timeout = duration
            default:
                guard !argument.hasPrefix("--") else {
                    throw ConfigurationError(.unknownFlag, variable: nil, message: "unknown option \(argument)\n" + Self.usage)
                }
                files.append(argument)
            }
        }
        guard !files.isEmpty else {
            throw ConfigurationError(.missingValue, variable: nil, message: "no job files given\n" + Self.usage)
        }
    }

    /// Runs the command; returns the process's exit status.
    public func run(configuration: BridgeConfiguration) async throws -> Int32 {
        let connection = try await AMQPConnection.connect(
            configuration.brokerConfiguration(connectionName: "blitline-bridge submit"))
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        var replyQueue: String?
        var replies: AMQPConsumer?
        if wait {
            let queue = try await channel.declareQueue("", durable: false, exclusive: true, autoDelete: true).name
            replies = try await channel.consume(queue: queue, prefetch: 100)
            replyQueue = queue
        }
        var requestIDs: [String] = []
        for file in files {
            let body = try Array(Data(contentsOf: URL(fileURLWithPath: file)))
            let id = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
            try await channel.publish(
                body, routingKey: configuration.jobsQueue, mandatory: true,
                properties: AMQPProperties(
                    contentType: "application/json", deliveryMode: AMQPProperties.persistent,
                    correlationID: id, replyTo: replyQueue, messageID: id))
            requestIDs.append(id)
            print("submitted \(id)")
        }
        guard let replies else {
            await connection.close()
            return 0
        }
        let outcome = try await collect(replies, expecting: Set(requestIDs))
        await connection.close()
        print(outcome.summary)
        return outcome.allCompleted ? 0 : 1
    }

    /// Prints events for `expecting` as they come, until all came or the timeout passed.
    private func collect(_ replies: AMQPConsumer, expecting: Set<String>) async throws -> (summary: String, allCompleted: Bool) {
        let seen = Outcomes()
        let limit = timeout
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var waiting = expecting
                for try await delivery in replies {
                    delivery.ack()
                    guard let event = try? JSONValue(parsing: delivery.body), let data = event["data"],
                        let requestID = data["request_id"]?.stringValue, waiting.remove(requestID) != nil
                    else { continue }
                    print(Self.describe(data))
                    seen.record(requestID, completed: data["status"]?.stringValue == "completed")
                    if waiting.isEmpty { return }
                }
            }
            group.addTask { try await Task.sleep(for: limit) }
            _ = try await group.next()
            group.cancelAll()
        }
        let outcomes = seen.all
        let completed = outcomes.values.filter { $0 }.count
        let failed = outcomes.count - completed
        let missing = expecting.count - outcomes.count
        var summary = "\(expecting.count) requests: \(completed) completed, \(failed) failed"
        if missing > 0 { summary += ", \(missing) without an event after \(limit)" }
        return (summary, failed == 0 && missing == 0)
    }

    /// One event in a few readable lines.
    static func describe(_ data: JSONValue) -> String {
        let requestID = data["request_id"]?.stringValue ?? "?"
        let jobID = data["job_id"]?.stringValue.map { " (job \($0))" } ?? ""
        guard data["status"]?.stringValue == "completed" else {
            let reason = data["reason"]?.stringValue ?? "failed"
            let errors = data["errors"]?.arrayValue?.compactMap(\.stringValue).joined(separator: "; ") ?? ""
            return "✘ \(requestID): failed, \(reason)\(jobID): \(errors)"
        }
        var lines = ["✔ \(requestID): completed via \(data["completed_via"]?.stringValue ?? "?")\(jobID)"]
        for image in data["images"]?.arrayValue ?? [] {
            let size = "\(image["width"]?.intValue.map(String.init) ?? "?")x\(image["height"]?.intValue.map(String.init) ?? "?")"
            lines.append(
                "    \(image["image_identifier"]?.stringValue ?? "?")  \(size)  \(image["url"]?.stringValue ?? "")")
        }
        return lines.joined(separator: "\n")
    }
}

/// Which requests have had their event, and whether it was a completion.
private final class Outcomes: Sendable {
    private let outcomes = Mutex<[String: Bool]>([:])

    func record(_ requestID: String, completed: Bool) { outcomes.withLock { $0[requestID] = completed } }

    var all: [String: Bool] { outcomes.withLock { $0 } }
}
