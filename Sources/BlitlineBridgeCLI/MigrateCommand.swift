import AMQP
import ArgumentParser
import BlitlineBridge
import Foundation

/// `blitline-bridge migrate`: finishes an upgrade from a version before 0.2 once every instance
/// runs 0.2 or later, by removing the binding that copied every event into the outcomes stream.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Finish an upgrade from 0.1: stop copying every event into the outcomes stream.",
        discussion: """
            Versions before 0.2 bound JOBS_QUEUE.outcomes to EVENTS_EXCHANGE (routing key job.#), \
            so the stream held a copy of every event; from 0.2 on, instances write one small record \
            per batch of events instead, and read both. Run this once no instance of a version \
            before 0.2 runs: such an instance learns other instances' outcomes only from the copies, \
            and without them would time out jobs that have a result. It removes that binding and \
            nothing else; running it again does no harm. Uses the worker's settings \
            (AMQP_URL, AMQP_CA_FILE, JOBS_QUEUE, EVENTS_EXCHANGE, or their flags after `migrate`).
            """
    )

    @OptionGroup var settings: WorkerSettings

    func run() async throws {
        let configuration = try toolConfiguration(settings: settings.flags)
        let topology = configuration.topology
        try await withToolConnection(configuration, name: "migrate") { connection in
            try await topology.removeLegacyOutcomesBinding(on: connection.openChannel())
        }
        print(
            "\(topology.outcomesStream) no longer receives a copy of each event of \(topology.eventsExchange) "
                + "(binding \(Topology.legacyOutcomesRoutingKey) removed, or absent already)")
    }
}
