import AMQP
import ArgumentParser
import Blitline
import BlitlineBridge
import Foundation

/// `blitline-bridge dead-letters list|replay [--limit N]`: shows what sits in `{JOBS_QUEUE}.dead`,
/// or moves it back to the jobs queue after a fix, publish confirmed before the dead letter is
/// acknowledged.
struct DeadLettersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "Show what sits in JOBS_QUEUE.dead, or replay it to JOBS_QUEUE.",
        discussion: "Uses AMQP_URL, AMQP_CA_FILE and JOBS_QUEUE from the environment, or their flags, as the worker does.",
        subcommands: [List.self, Replay.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the first dead letters and leave the queue as it was.",
            discussion: """
                Prints the first N messages of JOBS_QUEUE.dead with their message id, correlation \
                id, the x-bridge-error that says why they failed, and the start of their body. \
                Nothing is removed: the messages return to the queue in the same order (marked \
                redelivered). With --json, one JSON object per dead letter, one per line: \
                "message_id", "request_id", "correlation_id", "error" (null where absent), "body" \
                (the body as text when it is UTF-8, else null) and "body_bytes"; and nothing else.
                """
        )

        @Option(help: ArgumentHelp("How many to show.", valueName: "n"))
        var limit: Limit = Limit(DeadLetters.defaultListLimit)

        @Flag(help: "One JSON object per dead letter, one per line.")
        var json = false

        @OptionGroup(title: "Settings")
        var broker: BrokerSettings

        func run() async throws {
            try await DeadLetters(action: .list, limit: limit.value, json: json).run(settings: broker.flags)
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move dead letters back to JOBS_QUEUE without their error.",
            discussion: """
                Moves the first N messages (default: all there are when it starts) back to \
                JOBS_QUEUE, with the same body and properties but without x-bridge-error, \
                x-bridge-attempt and x-death. Each dead letter is acknowledged only once the broker \
                has confirmed its copy in JOBS_QUEUE; on a failed publish it stays in place and the \
                command exits 1.
                """
        )

        @Option(help: ArgumentHelp("How many to replay at most.", valueName: "n"))
        var limit: Limit?

        @OptionGroup(title: "Settings")
        var broker: BrokerSettings

        func run() async throws {
            try await DeadLetters(action: .replay, limit: limit?.value, json: false).run(settings: broker.flags)
        }
    }

    /// `--limit`: a whole number above zero.
    struct Limit: ExpressibleByArgument {
        let value: Int

        init(_ value: Int) { self.value = value }

        init?(argument: String) {
            guard let value = Int(argument), value > 0 else { return nil }
            self.value = value
        }

        var defaultValueDescription: String { String(value) }
    }
}

/// What `dead-letters` does.
struct DeadLetters: Sendable {
    /// What to do with the dead letters.
    enum Action: String, Sendable {
        /// Print them and leave the queue as it was (count and order).
        case list
        /// Publish each to the jobs queue, then acknowledge it.
        case replay
    }

    var action: Action
    /// How many messages at most; `nil` is every message there was at the start.
    var limit: Int?
    /// `list --json`: one JSON line per dead letter.
    var json = false

    /// How many `list` shows without `--limit`.
    static let defaultListLimit = 20
    /// The broker's dead-lettering history, dropped on replay (with the bridge's own headers but
    /// the request id) so that the request starts afresh.
    static let deathHeaders: Set<String> = [
        "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
    ]

    /// Runs the command with the worker's configuration from the environment and `settings`
    /// (flags); exits 1 on failure.
    func run(settings: [String]) async throws {
        let status = try await run(configuration: try toolConfiguration(settings: settings))
        if status != 0 { throw ExitCode(status) }
    }

    /// Runs the command; returns the process's exit status.
    func run(configuration: BridgeConfiguration) async throws -> Int32 {
        try await withToolConnection(configuration, name: "dead-letters \(action)") { connection in
            try await run(on: connection, jobsQueue: configuration.jobsQueue)
        }
    }

    private func run(on connection: AMQPConnection, jobsQueue: String) async throws -> Int32 {
        let deadQueue = Topology.deadQueue(of: jobsQueue)
        let source = try await connection.openChannel()
        let waiting: Int
        do {
            waiting = Int(try await source.declareQueue(deadQueue, passive: true).messageCount)
        } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.notFound {
            Self.complain("queue \(deadQueue) does not exist: is JOBS_QUEUE right? (the bridge creates it on start)")
            return 1
        }
        switch action {
        case .list: return try await list(deadQueue, waiting: waiting, from: source)
        case .replay: return try await replay(deadQueue, waiting: waiting, from: source, to: jobsQueue, over: connection)
        }
    }

    /// Takes up to the limit with `basic.get` and closes the channel without acknowledging: the
    /// broker then puts every message back at its own place, so count and order stay as they were.
    private func list(_ deadQueue: String, waiting: Int, from channel: AMQPChannel) async throws -> Int32 {
        var shown: [AMQPDelivery] = []
        while shown.count < limit ?? waiting, let delivery = try await channel.get(queue: deadQueue) {
            shown.append(delivery)
        }
        try await channel.close()
        if json {
            for delivery in shown { print(Self.json(delivery).jsonString) }
            return 0
        }
        let more = waiting > shown.count ? ", showing the first \(shown.count)" : ""
        print("\(deadQueue): \(waiting) dead letter\(waiting == 1 ? "" : "s")\(more)")
        for delivery in shown {
            print("")
            print(Self.describe(delivery))
        }
        return 0
    }

    /// One by one: publish to the jobs queue (mandatory, confirmed), then acknowledge the dead
    /// letter. The first failure stops it; that message goes back when its channel closes.
    private func replay(
        _ deadQueue: String, waiting: Int, from source: AMQPChannel, to jobsQueue: String,
        over connection: AMQPConnection
    ) async throws -> Int32 {
        let target = try await connection.openChannel()
        try await target.enableConfirms()
        // Bounded by what was there at the start, so that a request the bridge dead-letters again
        // while this runs is not replayed in a loop.
        let count = min(limit ?? waiting, waiting)
        var replayed = 0
        var failure: String?
        while replayed < count, let delivery = try await source.get(queue: deadQueue) {
            let name = Self.name(of: delivery.properties)
            do {
                try await target.publish(
                    delivery.body, routingKey: jobsQueue, mandatory: true,
                    properties: Self.replayProperties(delivery.properties))
            } catch {
                failure = "✘ \(name): not replayed, left in \(deadQueue): \(Self.reason(error, jobsQueue: jobsQueue))"
                break
            }
            delivery.ack()
            replayed += 1
            let error = delivery.properties.headers?["x-bridge-error"]?.stringValue.map { " (was: \($0))" } ?? ""
            print("✔ \(name) → \(jobsQueue)\(Self.shortened(error, to: 160))")
        }
        // Closing sends the acknowledgements first and hands an unpublished message back.
        try await source.close()
        let left = try? await connection.openChannel().declareQueue(deadQueue, passive: true).messageCount
        if let failure { print(failure) }
        print(
            "\(replayed) of \(count) dead letter\(count == 1 ? "" : "s") replayed to \(jobsQueue)"
                + (left.map { "; \($0) left in \(deadQueue)" } ?? ""))
        return failure == nil ? 0 : 1
    }

    /// The dead letter's properties for its return: the same, minus the headers of the failure.
    static func replayProperties(_ properties: AMQPProperties) -> AMQPProperties {
        var requestID: AMQPTable = [:]
        requestID[BridgeHeader.requestID] = properties.headers?[BridgeHeader.requestID]
        var copy = properties.copyForRepublishing(bridgeHeaders: requestID)
        if let headers = copy.headers {
            let kept = AMQPTable(headers.entries.filter { !deathHeaders.contains($0.key) })
            copy.headers = kept.isEmpty ? nil : kept
        }
        return copy
    }

    /// A dead letter in a few lines: id, correlation id, error, the start of the body.
    static func describe(_ delivery: AMQPDelivery) -> String {
        let properties = delivery.properties
        var lines = [name(of: properties) + (properties.correlationID.map { "  correlation \($0)" } ?? "")]
        let rejected = properties.headers?["x-first-death-reason"]?.stringValue == "rejected"
        lines.append(
            "    error: "
                + (properties.headers?["x-bridge-error"]?.stringValue
                    ?? (rejected ? "(rejected by the bridge, dead-lettered by the queue: its failure event says why)" : "(no x-bridge-error)")))
        let text = String(String(decoding: delivery.body, as: UTF8.self).map { $0.isNewline || $0 == "\t" ? " " : $0 })
        let preview = shortened(text.trimmingCharacters(in: .whitespaces), to: 100)
        lines.append("    body:  \(preview) (\(delivery.body.count) bytes)")
        return lines.joined(separator: "\n")
    }

    /// A dead letter for `list --json`.
    static func json(_ delivery: AMQPDelivery) -> JSONValue {
        let properties = delivery.properties
        func string(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        let body = String(validating: delivery.body, as: UTF8.self)
        return [
            "message_id": string(properties.messageID.flatMap { $0.isEmpty ? nil : $0 }),
            "request_id": string(properties.headers?[BridgeHeader.requestID]?.stringValue ?? properties.messageID),
            "correlation_id": string(properties.correlationID),
            "error": string(properties.headers?["x-bridge-error"]?.stringValue),
            "body": string(body), "body_bytes": .number(String(delivery.body.count)),
        ]
    }

    /// The message id, or the request id the bridge generated for a message without one.
    static func name(of properties: AMQPProperties) -> String {
        if let id = properties.messageID, !id.isEmpty { return id }
        if let id = properties.headers?[BridgeHeader.requestID]?.stringValue {
            return "\(id) (no message id; request id generated by the bridge)"
        }
        return "(no message id)"
    }

    private static func reason(_ error: any Error, jobsQueue: String) -> String {
        guard let error = error as? AMQPError else { return "\(error)" }
        if error.code == .returned {
            return "queue \(jobsQueue) does not exist (start the bridge once, it declares it)"
        }
        if error.isConnectionError || error.code == .channelClosed {
            return "\(error) (it may have reached \(jobsQueue) all the same)"
        }
        return "\(error)"
    }

    private static func shortened(_ text: String, to length: Int) -> String {
        text.count > length ? String(text.prefix(length - 1)) + "…" : text
    }

    private static func complain(_ text: String) {
        FileHandle.standardError.write(Data("blitline-bridge: \(text)\n".utf8))
    }
}
