// The worker's entry point: everything is in BlitlineBridgeCLI, so that tests can run its commands.
import BlitlineBridgeCLI

await BridgeCommand.main(arguments: Array(CommandLine.arguments.dropFirst()))
