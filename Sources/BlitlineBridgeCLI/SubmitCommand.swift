import AMQP
import ArgumentParser
import AsyncSupport
import Blitline
import BlitlineBridge
import Foundation
import Synchronization

/// `blitline-bridge submit FILE… [--id ID] [--wait] [--timeout DURATION] [--json]`: publishes job
/// files as requests, each under a request id of its own, and, with `--wait`, prints each one's
/// event as it comes, through a `reply_to` queue of its own.
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Publish job files as requests; with --wait, print their events as they come.",
        discussion: """
            Publishes each FILE (one Blitline job as JSON) to JOBS_QUEUE as a request, with \
            AMQP_URL and JOBS_QUEUE from the environment or their flags, as the worker reads \
            them. With --wait, prints each request's event as it arrives, a status line meanwhile \
            on a terminal, and exits 1 if any failed or did not arrive within --timeout.
            """
    )

    @Argument(help: "Job files, one Blitline job as JSON each.", completion: .file(extensions: ["json"]))
    var files: [String]

    @Option(help: ArgumentHelp(
        "The request id (and message id) of the one FILE. By default, the file's name without its extension and a random suffix, so that submitting a file again makes a new request.",
        valueName: "id"))
    var id: String?

    @Flag(help: "Wait for each request's event and print it.")
    var wait = false

    @Option(
        help: ArgumentHelp(
            "How long --wait waits, e.g. 90s or 1.5h; by default JOB_TIMEOUT + TIMEOUT_GRACE + 1m, by when every job has its event, if only a timeout.",
            valueName: "duration"),
        transform: { text in
            do {
                return try DurationText.parse(text)
            } catch {
                throw ValidationError("\(error); use 250ms, 30s, 10m or 1h")
            }
        })
    var timeout: Duration?

    @Flag(help: "Print each event as one JSON line on stdout (the event as published), and nothing else there.")
    var json = false

    @OptionGroup(title: "Settings")
    var broker: BrokerSettings

    func validate() throws {
        guard files.count == 1 || id == nil else { throw ValidationError("--id names one request: give one FILE") }
        if let id, id.isEmpty || id.utf8.count > RequestEnvelope.maxRequestIDBytes {
            throw ValidationError("--id takes 1 to \(RequestEnvelope.maxRequestIDBytes) bytes of UTF-8 (a request id)")
        }
    }

    func run() async throws {
        let status = try await run(configuration: try toolConfiguration(settings: broker.flags))
        if status != 0 { throw ExitCode(status) }
    }

    /// How long `--wait` waits by default: a job's deadline (`JOB_TIMEOUT` after submission), the
    /// grace before its timeout is decided, and a minute for the bridge to get to it.
    static func waitLimit(_ configuration: BridgeConfiguration) -> Duration {
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
    func run(configuration: BridgeConfiguration) async throws -> Int32 {
        let connection = try await configuration.connectToBroker(connectionName: "blitline-bridge submit").connection
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
        let ticker = status.isTerminal ? Task {
            while !Task.isCancelled {
                status.show()
                try? await Task.sleep(for: .seconds(1))
            }
        } : nil
        let failure: (any Error)? = await DeadlineRace.value(within: limit, fallback: nil) {
            var waiting = expecting
            do {
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
                    if waiting.isEmpty { break }
                }
                return nil
            } catch {
                return error
            }
        }
        ticker?.cancel()
        if let failure { throw failure }
        status.clear()
        let outcomes = seen.all
        let completed = outcomes.values.filter { $0 }.count
        let failed = outcomes.count - completed
        let missing = expecting.count - outcomes.count
        var summary = "\(expecting.count) requests: \(completed) completed, \(failed) failed"
        if missing > 0 { summary += ", \(missing) without an event after \(DurationText.text(limit))" }
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
