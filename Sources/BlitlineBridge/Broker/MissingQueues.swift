import AMQP
import Logging
import Synchronization

/// Declares a queue of the bridge's own again when a publish finds it gone: deleted while the
/// bridge runs (an operator's slip, a definitions import). The broker returns a mandatory publish
/// to a queue that does not exist; the publish is tried again once the queue is back (a returned
/// message was routed nowhere, so nothing is published twice).
///
/// Only the bridge's own queues (``Topology/queues``): nobody binds to them, so declaring one
/// again restores all of it. Not the events exchange: declared again, it would have lost the
/// downstream queues' bindings, and events published into it before they bind again would be
/// routed nowhere; an event it refuses is held until it is back (README, "Topology").
final class MissingQueues: Sendable {
    private let queues: [String: AMQPTable]
    private let connection: AMQPConnection
    private let logger: Logger
    /// For each queue, the declaration under way (the publishes that found it missing at the same
    /// moment wait for one), or when the last one failed: for ``retryAfterFailure`` after that,
    /// publishes that find it missing fail at once, rather than each try and log again.
    private let declarations = Mutex<[String: Declaration]>([:])
    static let retryAfterFailure: Duration = .seconds(5)

    private enum Declaration {
        case running(Task<Bool, Never>)
        case failed(ContinuousClock.Instant)
    }

    init(_ topology: Topology, on connection: AMQPConnection, logger: Logger) {
        self.queues = Dictionary(topology.queues.map { ($0.name, $0.arguments) }, uniquingKeysWith: { first, _ in first })
        self.connection = connection
        self.logger = logger
    }

    /// Declares `queue` again if it is one of the bridge's own; returns whether it exists now.
    func restore(_ queue: String) async -> Bool {
        guard let arguments = queues[queue] else { return false }
        let declaration = declarations.withLock { declarations -> Task<Bool, Never>? in
            switch declarations[queue] {
            case .running(let running)?:
                return running
            case .failed(let when)? where when.duration(to: .now) < Self.retryAfterFailure:
                return nil
            case .failed?, nil:
                let declaration = Task { await declare(queue, arguments: arguments) }
                declarations[queue] = .running(declaration)
                return declaration
            }
        }
        guard let declaration else { return false }
        let restored = await declaration.value
        declarations.withLock { declarations in
            guard case .running(let running)? = declarations[queue], running == declaration else { return }
            declarations[queue] = restored ? nil : .failed(.now)
        }
        return restored
    }

    private func declare(_ queue: String, arguments: AMQPTable) async -> Bool {
        do {
            let channel = try await connection.openChannel()
            try await channel.declareQueue(queue, durable: true, arguments: arguments)
            try? await channel.close()
            logger.warning("a queue of the bridge's own was gone; declared it again", metadata: ["queue": "\(queue)"])
            return true
        } catch {
            logger.error(
                "a queue of the bridge's own is gone and could not be declared again",
                metadata: ["queue": "\(queue)", "error": "\(error)"])
            return false
        }
    }
}
