import AMQP
import ArgumentParser
import AsyncHTTPClient
import Blitline
import BlitlineBridge
import Foundation
import Logging

/// `blitline-bridge check`: connects with the current configuration and says in plain words what is
/// wrong, if anything: the broker and the login, the topology and its arguments, the mode and the
/// postback settings, the application id, and whether Blitline answers. One line per check.
struct CheckCommand: AsyncParsableCommand {
    /// One check's outcome, printed as one line.
    struct Finding: Sendable, Equatable {
        /// Named as `--json` writes it.
        enum Verdict: String, Sendable, Equatable {
            case pass, warning, failure
        }

        var verdict: Verdict
        /// What was checked, e.g. `broker` or `queue blitline.jobs.dead`.
        var subject: String
        var text: String

        init(_ verdict: Verdict, _ subject: String, _ text: String) {
            self.verdict = verdict
            self.subject = subject
            self.text = text
        }

        var line: String {
            let mark = switch verdict {
            case .pass: "✔"
            case .warning: "⚠"
            case .failure: "✘"
            }
            return "\(mark) \(subject): \(text)"
        }
    }

    static func json(_ findings: [Finding], failures: Int, warnings: Int) -> JSONValue {
        [
            "ok": .bool(failures == 0), "failures": .number(String(failures)), "warnings": .number(String(warnings)),
            "findings": .array(findings.map { finding in
                ["verdict": .string(finding.verdict.rawValue), "subject": .string(finding.subject), "text": .string(finding.text)]
            }),
        ]
    }

    /// How long Blitline's URLs have to answer.
    static let httpTimeoutSeconds: Int64 = 5

    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Say what is wrong with the broker, the topology and the settings, if anything.",
        discussion: """
            Connects with the configuration the worker would run with (environment variables, and \
            the worker's flags after `check`) and prints one line per check: ✔ fine, ⚠ worth a \
            look, ✘ wrong. It checks that the broker is reachable and takes the login; that each \
            queue of the topology and the events exchange exist with the arguments the bridge \
            declares (it creates nothing); the mode and, in postback mode, that Blitline can reach \
            POSTBACK_BASE_URL and where it will post; that BLITLINE_APPLICATION_ID is set; that \
            BLITLINE_API_URL (and, when polling, BLITLINE_POLL_URL) answers HTTP at all (no job \
            is submitted). Exits 1 if any check is ✘, 2 on a setting that cannot be read.
            """
    )

    @Flag(help: ArgumentHelp(
        "Print one JSON object at the end instead: {\"ok\", \"failures\", \"warnings\", \"findings\": [{\"verdict\": \"pass\"|\"warning\"|\"failure\", \"subject\", \"text\"}]}."))
    var json = false

    @OptionGroup var settings: WorkerSettings

    func run() async throws {
        let status = await run(configuration: try toolConfiguration(settings: settings.flags))
        if status != 0 { throw ExitCode(status) }
    }

    /// Runs every check, printing each line as it comes (or, with `json`, one object at the end);
    /// returns the process's exit status.
    func run(configuration: BridgeConfiguration) async -> Int32 {
        var findings: [Finding] = []
        let json = json
        func report(_ finding: Finding) {
            if !json { print(finding.line) }
            findings.append(finding)
        }
        await checkBroker(configuration, report: report)
        Self.settingsFindings(configuration).forEach(report)
        report(await Self.checkAnswers("BLITLINE_API_URL", url: configuration.blitlineAPIURL))
        if !configuration.usesPostbacks {
            report(await Self.checkAnswers("BLITLINE_POLL_URL", url: configuration.blitlinePollURL))
        }
        let failures = findings.filter { $0.verdict == .failure }.count
        let warnings = findings.filter { $0.verdict == .warning }.count
        if json {
            print(Self.json(findings, failures: failures, warnings: warnings).jsonString)
            return failures == 0 ? 0 : 1
        }
        print("")
        switch (failures, warnings) {
        case (0, 0): print("All \(findings.count) checks passed.")
        case (0, _): print("No problems; \(warnings) warning\(warnings == 1 ? "" : "s") (⚠) worth a look.")
        default:
            print("\(failures) problem\(failures == 1 ? "" : "s") (✘), \(warnings) warning\(warnings == 1 ? "" : "s") (⚠).")
        }
        return failures == 0 ? 0 : 1
    }

    /// The login, then every queue and the exchange, passively: nothing is created. A node of
    /// `AMQP_URL` that does not answer is a problem when none does, and a warning otherwise.
    private func checkBroker(_ configuration: BridgeConfiguration, report: (Finding) -> Void) async {
        var nodes: AMQPEndpoints
        do {
            nodes = try configuration.brokerEndpoints(connectionName: "blitline-bridge check")
        } catch {
            return report(Finding(.failure, "broker", "AMQP_URL cannot be used: \(error)"))
        }
        var refusals: [Finding] = []
        let (connection, amqp): (AMQPConnection, AMQPConnection.Configuration)
        do {
            (connection, amqp) = try await nodes.connectToANode(
                logger: Logger(label: "amqp") { _ in SwiftLogNoOpLogHandler() },
                failed: { refusals.append(Self.brokerFailure($1, $0)) })
        } catch {
            return refusals.forEach(report)
        }
        for refusal in refusals {
            report(Finding(.warning, refusal.subject, refusal.text.replacingOccurrences(of: Self.topologyUnchecked, with: "")))
        }
        report(Finding(.pass, "broker", "connected to \(amqp) and logged in as \(amqp.username)"))
        let topology = configuration.topology
        for queue in topology.queues {
            report(await Self.checkQueue(queue.name, arguments: queue.arguments, topology: topology, on: connection))
        }
        report(await Self.checkExchange(topology.eventsExchange, on: connection))
        await connection.close()
    }

    /// Why the connection failed, in words: nothing listening, the login refused, or TLS.
    static func brokerFailure(_ error: any Error, _ amqp: AMQPConnection.Configuration) -> Finding {
        let unchecked = topologyUnchecked
        guard let error = error as? AMQPError else {
            return Finding(.failure, "broker", "cannot connect to \(amqp): \(error)\(unchecked)")
        }
        let address = "\(amqp.host):\(amqp.port)"
        let text: String
        switch error.code {
        case .loginRefused where error.replyCode == 530:
            text = "the broker at \(address) refused virtual host \"\(amqp.virtualHost)\" to user \"\(amqp.username)\" "
                + "(it does not exist, or the user has no permission on it): \(error.replyText)"
        case .loginRefused:
            text = "wrong credentials: the broker at \(address) refused the login of user \"\(amqp.username)\"; "
                + "check the user and password in AMQP_URL (RabbitMQ lets guest log in only from localhost)"
        case .tlsFailed:
            text = "TLS with \(address) failed: \(error.replyText); check that the port speaks TLS (usually 5671) "
                + "and that AMQP_CA_FILE holds the CA of the broker's certificate"
        case .connectionFailed where error.replyCode == nil && error.replyText.hasPrefix("cannot connect"):
            text = "cannot connect to \(address) (\(Self.refusalReason(error.replyText))): "
                + "is the broker running, and are the host and port in AMQP_URL right?"
        default:
            text = "cannot connect to \(amqp): \(error.replyText)"
        }
        return Finding(.failure, "broker", text + unchecked)
    }

    private static let topologyUnchecked = " (topology not checked)"

    /// librabbitmq's reason, in the words an operator looks for.
    private static func refusalReason(_ text: String) -> String {
        let reason = text.split(separator: ": ", maxSplits: 1).last.map(String.init) ?? text
        switch reason {
        case "a socket error occurred": return "connection refused or unreachable"
        case "hostname lookup failed": return "unknown host name"
        case "operation timed out", "request timed out": return "no answer in time"
        default: return reason
        }
    }

    /// A passive declare says whether the queue exists; an active one with the bridge's arguments,
    /// made only once it exists, says whether they match (406 closes that channel, a throwaway).
    static func checkQueue(
        _ name: String, arguments: AMQPTable, topology: Topology, on connection: AMQPConnection
    ) async -> Finding {
        let subject = "queue \(name)"
        do {
            let channel = try await connection.openChannel()
            let queue: AMQPChannel.Queue
            do {
                queue = try await channel.declareQueue(name, passive: true)
            } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.notFound {
                return Finding(.warning, subject, "missing (the bridge creates it on start)")
            }
            do {
                try await channel.declareQueue(name, durable: true, arguments: arguments)
            } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.preconditionFailed {
                return Finding(
                    .failure, subject,
                    "exists with other arguments than the bridge declares, so the bridge will not start: "
                        + "\(error.replyText); delete it (and its messages) or choose another JOBS_QUEUE; "
                        + "the README lists the arguments")
            }
            try? await channel.close()
            switch name {
            case topology.jobsQueue:
                return Finding(.pass, subject, "exists; \(queue.messageCount) waiting, \(queue.consumerCount) consumer(s)")
            case topology.deadQueue where queue.messageCount > 0:
                return Finding(
                    .pass, subject,
                    "exists; \(queue.messageCount) dead letter(s), see `blitline-bridge dead-letters list`")
            default:
                return Finding(.pass, subject, "exists with the expected arguments")
            }
        } catch {
            return Finding(.failure, subject, "cannot be checked: \(error)")
        }
    }

    /// The events exchange: it exists, and is a durable topic exchange.
    static func checkExchange(_ name: String, on connection: AMQPConnection) async -> Finding {
        let subject = "exchange \(name)"
        do {
            let channel = try await connection.openChannel()
            do {
                try await channel.declareExchange(name, type: "topic", passive: true)
            } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.notFound {
                return Finding(.warning, subject, "missing (the bridge creates it on start)")
            }
            do {
                try await channel.declareExchange(name, type: "topic", durable: true)
            } catch let error as AMQPError where error.replyCode == AMQPError.ReplyCode.preconditionFailed {
                return Finding(
                    .failure, subject,
                    "exists, but not as a durable topic exchange: \(error.replyText); delete it or choose another "
                        + "EVENTS_EXCHANGE")
            }
            try? await channel.close()
            return Finding(.pass, subject, "exists, a durable topic exchange")
        } catch {
            return Finding(.failure, subject, "cannot be checked: \(error)")
        }
    }

    /// Whether `url` answers HTTP at all, within ``httpTimeoutSeconds``: any status will do.
    static func checkAnswers(_ variable: String, url: String) async -> Finding {
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(httpTimeoutSeconds))
            return Finding(.pass, variable, "\(url) answers (HTTP \(response.status.code))")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .connectTimeout {
            return Finding(.failure, variable, "\(url) did not answer within \(httpTimeoutSeconds) s")
        } catch {
            let reason = String(describing: error)
            return Finding(
                .failure, variable,
                "\(url) does not answer: \(reason.count > 160 ? reason.prefix(159) + "…" : reason[...])")
        }
    }
}
