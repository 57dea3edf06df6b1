import ArgumentParser
import BlitlineBridge
import Foundation

/// `blitline-bridge`: the worker (`run`, also with no subcommand) and the operator tools.
public struct BridgeCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "blitline-bridge",
        abstract: "Consumes Blitline job requests from RabbitMQ, submits them to Blitline and publishes one completion or failure event per request.",
        discussion: """
            With no subcommand, or with `run`, this is the worker: `blitline-bridge run --help` \
            lists every setting. The other subcommands are operator tools.
            Exit status: 0 done, 1 failed, 2 a bad argument or setting.
            """,
        version: "blitline-bridge \(BridgeVersion.current)",
        subcommands: [
            RunCommand.self, SubmitCommand.self, DeadLettersCommand.self, CheckCommand.self, MigrateCommand.self,
            VersionCommand.self,
        ],
        defaultSubcommand: RunCommand.self
    )

    public init() {}

    /// Parses `arguments` (without the program's name), runs the command and exits with its status:
    /// 2 on a bad argument or setting, with the reason on stderr; 1 when the command fails.
    public static func main(arguments: [String]) async -> Never {
        do {
            var command = try parseAsRoot(arguments)
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
            Foundation.exit(0)
        } catch let error as ConfigurationError {
            fail(error.description, status: 2)
        } catch let error as ExitCode {
            Foundation.exit(error.rawValue)
        } catch {
            switch exitCode(for: error) {
            case .success:
                // --help, --version, a completion script.
                print(fullMessage(for: error))
                Foundation.exit(0)
            case .validationFailure:
                // The parser's mistakes (an unknown flag, a missing file) are bad arguments; it
                // says which and how the command is used.
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            case let status:
                fail("\(error)", status: status.rawValue)
            }
        }
    }

    /// `blitline-bridge: <reason>` on stderr, then exits with `status`.
    static func fail(_ reason: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data("blitline-bridge: \(reason)\n".utf8))
        Foundation.exit(status)
    }
}

/// `blitline-bridge version`: the same as `--version`.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print the version and exit (also --version).")

    func run() {
        print("blitline-bridge \(BridgeVersion.current)")
    }
}
