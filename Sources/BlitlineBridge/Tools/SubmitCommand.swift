import AMQP
import Blitline
import Foundation
import Synchronization

/// `blitline-bridge submit FILE… [--id ID] [--wait] [--timeout DURATION] [--json]`: publishes job
/// files as requests, each under a request id of its own, and, with `--wait`, prints each one's
/// event as it comes, through a `reply_to` queue of its own.
public struct SubmitCommand: Sendable {
    public var files: [String] = []
    /// The request id of the one file; by default each file's name without its extension and a
    /// random suffix, so that submitting a file twice makes two requests (consumers drop events
    /// whose id they have seen).
    public var id: String?
    public var wait = false
    /// How long `--wait` waits for the events; by default as long as a job may take to end in its
    /// timeout event (`waitLimit`).
    public var timeout: Duration?
    /// Events as JSON lines on stdout (the event as published), everything else on stderr.
    public var json = false

    /// Usage, for `--help` and mistakes.
    public static let usage = """
        usage: blitline-bridge submit FILE... [--id ID] [--wait] [--timeout DURATION] [--json]

        Publishes each FILE (one Blitline job as JSON) to JOBS_QUEUE as a request. Its request id
        (and message id) is the file name without its extension and a random suffix, so that
        submitting a file again makes a new request; --id sets it (one FILE only).
        With --wait, prints each request's event as it arrives, a status line meanwhile on a
        terminal, and exits 1 if any failed or did not arrive within --timeout (by default
        JOB_TIMEOUT + TIMEOUT_GRACE + 1m: by then every job has its event, if only a timeout).
        With --json, prints each event as one JSON line on stdout and nothing else there.
        Uses AMQP_URL and JOBS_QUEUE from the environment, as the worker does.

        """

    public init(arguments: ArraySlice<String>) throws(ConfigurationError) {
        var arguments = arguments
        func value(_ flag: String, inline: Substring?) throws(ConfigurationError) -> String {
            guard let value = inline.map(String.init) ?? arguments.popFirst(), !value.isEmpty else {
                throw ConfigurationError(.missingValue, variable: nil, message: "\(flag) needs a value\n" + Self.usage)
            }
            return value
        }
        while let argument = arguments.popFirst() {
            let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let flag = argument.hasPrefix("--") ? String(parts[0]) : argument
            let inline = argument.hasPrefix("--") && parts.count == 2 ? parts[1] : nil
            switch flag {
            case "--wait": wait = true
            case "--json": json = true
            case "--id":
                let id = try value(flag, inline: inline)
                guard id.utf8.count <= RequestEnvelope.maxRequestIDBytes else {
                    throw ConfigurationError(
                        .invalidValue, variable: nil,
                        message: "--id takes at most \(RequestEnvelope.maxRequestIDBytes) bytes of UTF-8 (a request id)")
                }
                self.id = id
            case "--timeout":
                guard let duration = try? BridgeConfiguration.parseDuration(try value(flag, inline: inline)) else {
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
        guard id == nil || files.count == 1 else {
            throw ConfigurationError(.invalidValue, variable: nil, message: "--id names one request: give one FILE")
        }
    }

    /// How long `--wait` waits by default: a job's deadline (`JOB_TIMEOUT` after submission), the
    /// grace before its timeout is decided, and a minute for the bridge to get to it.
    public static func waitLimit(_ configuration: BridgeConfiguration) -> Duration {
        configuration.jobTimeout + configuration.timeoutGrace + .seconds(60)
    }

    /// The request id of `file`.
    func requestID(for file: String) -> String {
        if let id { return id }
        let stem = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        // A request id holds 200 bytes of UTF-8: a long name is cut (a character cut in two becomes
        // U+FFFD, 3 bytes), the suffix takes 9 more.
        let name = String(decoding: stem.utf8.prefix(180), as: UTF8.self)
        return "\(name)-\(String(UInt32.random(in: .min ... .max), radix: 16))"
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
            let id = requestID(for: file)
            try await channel.publish(
                body, routingKey: configuration.jobsQueue, mandatory: true,
                properties: AMQPProperties(
                    contentType: "application/json", deliveryMode: AMQPProperties.persistent,
                    correlationID: id, replyTo: replyQueue, messageID: id))
            requestIDs.append(id)
            say("submitted \(id)")
        }
        guard let replies else {
            await connection.close()
            return 0
        }
        let outcome = try await collect(
            replies, expecting: Set(requestIDs), within: timeout ?? Self.waitLimit(configuration))
        await connection.close()
        say(outcome.summary)
        return outcome.allCompleted ? 0 : 1
    }

    /// A line for the person at the terminal: stdout, or stderr under `--json`.
    private func say(_ line: String) {
        if json {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        } else {
            print(line)
        }
    }

    /// Prints events for `expecting` as they come, until all came or `limit` passed; on a
    /// terminal, a status line meanwhile.
    private func collect(
        _ replies: AMQPConsumer, expecting: Set<String>, within limit: Duration
    ) async throws -> (summary: String, allCompleted: Bool) {
        let seen = Outcomes()
        let status = StatusLine(expecting: expecting.count, to: json ? STDERR_FILENO : STDOUT_FILENO)
        let json = json
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var waiting = expecting
                for try await delivery in replies {
                    delivery.ack()
                    guard let event = try? JSONValue(parsing: delivery.body), let data = event["data"],
                        let requestID = data["request_id"]?.stringValue, waiting.remove(requestID) != nil
                    else { continue }
                    let completed = data["status"]?.stringValue == "completed"
                    seen.record(requestID, completed: completed)
                    status.clear()
                    print(json ? String(decoding: delivery.body, as: UTF8.self) : Self.describe(data))
                    status.update(completed: completed)
                    if waiting.isEmpty { return }
                }
            }
            group.addTask { try await Task.sleep(for: limit) }
            if status.isTerminal {
                group.addTask {
                    while true {
                        status.show()
                        try await Task.sleep(for: .seconds(1))
                    }
                }
            }
            _ = try await group.next()
            group.cancelAll()
        }
        status.clear()
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

/// `submit --wait`'s status line on a terminal: done, failed, waiting, and the time since the start,
/// redrawn in place (`\r`) and cleared before anything else is printed.
private final class StatusLine: Sendable {
    private struct Counts {
        var completed = 0, failed = 0
        var shown = false
    }

    let isTerminal: Bool
    private let descriptor: Int32
    private let expecting: Int
    private let started = ContinuousClock.now
    private let counts = Mutex(Counts())

    init(expecting: Int, to descriptor: Int32) {
        self.expecting = expecting
        self.descriptor = descriptor
        isTerminal = isatty(descriptor) == 1
    }

    func update(completed: Bool) {
        counts.withLock { completed ? ($0.completed += 1) : ($0.failed += 1) }
        show()
    }

    func show() {
        guard isTerminal else { return }
        let line: String = counts.withLock { counts in
            counts.shown = true
            let elapsed = (ContinuousClock.now - started).components.seconds
            return "\r\u{1B}[K⧗ \(counts.completed) done, \(counts.failed) failed, "
                + "\(expecting - counts.completed - counts.failed) waiting, \(elapsed / 60)m\(elapsed % 60)s"
        }
        write(line)
    }

    func clear() {
        guard isTerminal, counts.withLock({ $0.shown }) else { return }
        write("\r\u{1B}[K")
    }

    private func write(_ text: String) {
        fflush(nil)  // what print() holds first, so that the line comes after it
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    }
}
