import AMQP
import Synchronization

/// What the parts of the bridge share about the broker: whether it is connected with the
/// topology declared, and the publisher to use while it is.
final class BrokerSession: Sendable {
    private let current = Mutex<(publisher: EventPublisher, connection: AMQPConnection)?>(nil)

    /// The publisher of the live connection, or `nil` while reconnecting.
    var publisher: EventPublisher? { current.withLock { $0?.publisher } }

    /// Connected, declared, and allowed to publish: `/readyz` answers 200. While the broker blocks
    /// the bridge's publishing (a memory or disk alarm), nothing can be finished, so not ready.
    var isReady: Bool { current.withLock { $0.map { !$0.connection.isBlocked } ?? false } }

    /// Whether the broker blocks the bridge's publishing now.
    var isBlocked: Bool { current.withLock { $0?.connection.isBlocked ?? false } }

    func connected(_ publisher: EventPublisher) {
        current.withLock { $0 = (publisher, publisher.channel.connection) }
    }

    func disconnected() { current.withLock { $0 = nil } }
}
