import ArgumentParser
import Testing

@testable import BlitlineBridge
@testable import BlitlineBridgeCLI

/// The command tree (README, "Operator tools"): the worker by default, one duration syntax, the
/// exit statuses, help and completion.
@Suite struct CommandLineTests {
    @Test func withNoSubcommandTheWorkerTakesTheSettingsFlags() throws {
        for arguments in [["--prefetch", "5", "--log-level=debug"], ["run", "--prefetch", "5", "--log-level=debug"]] {
            let command = try #require(try BridgeCommand.parseAsRoot(arguments) as? RunCommand, "\(arguments)")
            #expect(command.settings == ["--prefetch", "5", "--log-level=debug"])
            // The settings table still parses them, strictly.
            let configuration = try BridgeConfiguration(environment: [:], arguments: command.settings)
            #expect(configuration.prefetch == 5)
        }
        let bad = try #require(try BridgeCommand.parseAsRoot(["--prefech", "5"]) as? RunCommand)
        #expect(throws: ConfigurationError.self) { try BridgeConfiguration(environment: [:], arguments: bad.settings) }
    }

    @Test func checkTakesItsOwnFlagAndTheWorkersFlags() throws {
        let command = try #require(try BridgeCommand.parseAsRoot(["check", "--prefetch=5", "--json"]) as? CheckCommand)
        #expect(command.json)
        #expect(command.settings.flags == ["--prefetch=5"])
    }

    /// `submit --timeout` takes the settings' one duration syntax: what would trap or means nothing
    /// is refused, in both spellings of a flag.
    @Test(arguments: ["inf", "nan", "1e300", "-5s", "0", "soon", "1d", ""])
    func aTimeoutThatIsNotADurationIsRefused(_ text: String) {
        #expect(throws: (any Error).self) { try SubmitCommand.parse(["--timeout", text, "job.json"]) }
        #expect(throws: (any Error).self) { try SubmitCommand.parse(["--timeout=\(text)", "job.json"]) }
    }

    @Test func aTimeoutInAnyUnitIsTaken() throws {
        #expect(try SubmitCommand.parse(["--timeout", "90s", "job.json"]).timeout == .seconds(90))
        #expect(try SubmitCommand.parse(["--timeout=1.5m", "job.json"]).timeout == .seconds(90))
        #expect(try SubmitCommand.parse(["job.json", "--timeout", "250ms"]).timeout == .milliseconds(250))
        #expect(try SubmitCommand.parse(["job.json"]).timeout == nil)
    }

    @Test func submitNeedsAFileAndAnIdThatFits() {
        #expect(throws: (any Error).self) { try SubmitCommand.parse(["--wait"]) }
        #expect(throws: (any Error).self) { try SubmitCommand.parse(["a.json", "--id", ""]) }
        #expect(throws: (any Error).self) {
            try SubmitCommand.parse(["a.json", "--id", String(repeating: "x", count: RequestEnvelope.maxRequestIDBytes + 1)])
        }
        #expect(throws: (any Error).self) { try SubmitCommand.parse(["a.json", "--retries", "3"]) }
    }

    /// `submit` and `dead-letters` take the broker's settings as flags, which the settings table
    /// reads as it reads the worker's.
    @Test func toolsTakeTheBrokerSettingsAsFlags() throws {
        let submit = try SubmitCommand.parse(["a.json", "--jobs-queue", "orders.jobs", "--amqp-url=amqp://u:p@h:5673/v"])
        let configuration = try BridgeConfiguration(environment: ["JOBS_QUEUE": "other"], arguments: submit.broker.flags)
        #expect(configuration.jobsQueue == "orders.jobs")
        #expect(configuration.amqpURL == "amqp://u:p@h:5673/v")
        let list = try DeadLettersCommand.List.parse(["--jobs-queue=orders.jobs"])
        #expect(list.broker.flags == ["--jobs-queue=orders.jobs"])
        let replay = try DeadLettersCommand.Replay.parse(["--jobs-queue", ""])
        #expect(try BridgeConfiguration(environment: [:], arguments: replay.broker.flags).jobsQueue == BridgeConfiguration().jobsQueue)
    }

    @Test func deadLettersTakesAPositiveLimit() throws {
        #expect(try DeadLettersCommand.List.parse([]).limit.value == DeadLetters.defaultListLimit)
        #expect(try DeadLettersCommand.List.parse(["--limit=2", "--json"]).limit.value == 2)
        #expect(try DeadLettersCommand.Replay.parse([]).limit == nil)
        for bad in ["0", "-1", "x"] {
            #expect(throws: (any Error).self) { try DeadLettersCommand.Replay.parse(["--limit", bad]) }
        }
        #expect(throws: (any Error).self) { try DeadLettersCommand.Replay.parse(["--json"]) }
    }

    /// What an operator sees from the built executable, without a broker.
    @Suite struct Executable {
        func run(_ arguments: [String]) async throws -> OperatorQueues.ToolRun {
            try await OperatorQueues.runTool(arguments, environment: [:])
        }

        @Test func versionIsAFlagAndASubcommand() async throws {
            for arguments in [["--version"], ["version"]] {
                let run = try await run(arguments)
                #expect(run.status == 0 && run.output == "blitline-bridge \(BridgeVersion.current)\n", "\(run)")
            }
        }

        @Test func helpExplainsEachSubcommandAndTheWorkersSettings() async throws {
            let root = try await run(["--help"])
            #expect(root.status == 0, "\(root)")
            for subcommand in ["run (default)", "submit", "dead-letters", "check", "version"] {
                #expect(root.output.contains("  \(subcommand) "), "\(subcommand) in \(root)")
            }
            let submit = try await run(["help", "submit"])
            #expect(submit.status == 0 && submit.output.contains("--timeout <duration>"), "\(submit)")
            let worker = try await run(["run", "--help"])
            #expect(worker.status == 0, "\(worker)")
            #expect(worker.output.contains(BridgeConfiguration.helpText), "\(worker)")
        }

        @Test func aBadArgumentOrSettingExits2SayingWhich() async throws {
            let setting = try await run(["--prefetch", "many"])
            #expect(setting.status == 2 && setting.errors.hasPrefix("blitline-bridge: PREFETCH (--prefetch): "), "\(setting)")
            #expect(setting.errors.split(separator: "\n").count == 1, "\(setting)")
            let flag = try await run(["--prefech", "5"])
            #expect(flag.status == 2 && flag.errors.contains("unknown flag --prefech"), "\(flag)")
            let timeout = try await run(["submit", "--timeout", "inf", "job.json"])
            #expect(timeout.status == 2 && timeout.errors.contains("is not a duration"), "\(timeout)")
            let limit = try await run(["dead-letters", "list", "--limit", "0"])
            #expect(limit.status == 2, "\(limit)")
        }

        @Test func completionCoversSubcommandsAndSettings() async throws {
            let run = try await run(["--generate-completion-script", "bash"])
            #expect(run.status == 0, "\(run)")
            for word in ["submit", "dead-letters", "replay", "--timeout", "--prefetch", "--amqp-url"] {
                #expect(run.output.contains(word), "\(word) in the bash completion")
            }
        }
    }
}
