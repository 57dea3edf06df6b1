/// Failures of the bridge that are not the broker's or Blitline's own.
public struct BridgeError: Error, Sendable, CustomStringConvertible {
    private enum Code: Sendable {
        case topologyMismatch
    }

    private let code: Code
    public let description: String

    /// A queue exists with other arguments than the bridge declares: start-up stops, since
    /// reconnecting would only fail the same way.
    static func topologyMismatch(queue: String, detail: String) -> BridgeError {
        BridgeError(
            code: .topologyMismatch,
            description: "queue \(queue) already exists with other arguments (\(detail)); the README's "
                + "Topology section lists the arguments and how to move queues of an earlier version "
                + "(QUEUE_TYPE=classic keeps classic queues as they were)")
    }

    /// The events exchange exists as another type than `topic` or not durable: start-up stops, as
    /// for a queue.
    static func topologyMismatch(exchange: String, detail: String) -> BridgeError {
        BridgeError(
            code: .topologyMismatch,
            description: "exchange \(exchange) already exists with another type or durability (\(detail)); "
                + "the bridge publishes its events to a durable topic exchange (the README's Topology section)")
    }

    var isFatal: Bool { code == .topologyMismatch }
}
