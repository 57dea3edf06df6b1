import Synchronization

/// What the parts of the bridge share about the broker: whether it is connected with the
/// topology declared, and the publisher to use while it is.
final class BrokerSession: Sendable {
    private let current = Mutex<EventPublisher?>(nil)

    /// The publisher of the live connection, or `nil` while reconnecting.
    var publisher: EventPublisher? { current.withLock { $0 } }

    /// Connected and declared: `/readyz` answers 200.
    var isReady: Bool { publisher != nil }

    func connected(_ publisher: EventPublisher) { current.withLock { $0 = publisher } }

    func disconnected() { current.withLock { $0 = nil } }
}
