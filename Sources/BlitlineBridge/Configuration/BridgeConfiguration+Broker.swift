import AMQP
import Foundation
import Logging

extension BridgeConfiguration {
    /// The broker nodes of `AMQP_URL` with `AMQP_CA_FILE`, under a name the management UI shows:
    /// `name` followed by this host's name and process id, so that an operator tells instances
    /// apart. A `connection_name` in a URL is kept as it is. The connection's thread is called
    /// `amqp` and the name's last word (`amqp consumer`).
    package func brokerEndpoints(connectionName name: String) throws -> AMQPEndpoints {
        let nodes = try AMQPEndpoints(urls: amqpURL).configurations
        let instance = "\(name) (\(ProcessInfo.processInfo.hostName) pid \(getpid()))"
        return AMQPEndpoints(
            nodes.map { node in
                var node = node
                if let amqpCAFile { node.tls?.caFile = amqpCAFile }
                node.connectionName = node.connectionName ?? instance
                node.clientProperties = Self.clientProperties
                node.threadName = name.split(separator: " ").last.map { "amqp \($0)" }
                return node
            },
            start: Int.random(in: 0..<nodes.count))
    }

    /// What the management UI shows of the bridge's connections besides their names.
    static let clientProperties = [
        "version": BridgeVersion.current,
        "platform": "Swift on Linux",
        "information": "blitline-bridge: Blitline jobs from RabbitMQ, one event per request",
    ]

    /// A connection to a node of `AMQP_URL` that answers, each tried once from a random one: the
    /// operator tools', named as `brokerEndpoints` names it. Returns the node too.
    package func connectToBroker(
        connectionName name: String, logger: Logger = Logger(label: "amqp")
    ) async throws -> (connection: AMQPConnection, node: AMQPConnection.Configuration) {
        var nodes = try brokerEndpoints(connectionName: name)
        return try await nodes.connectToANode(logger: logger)
    }
}

extension AMQPEndpoints {
    /// Connects to the next node that answers, trying each once (with `connect`, by default
    /// `AMQPConnection.connect`); `failed` hears of each node that did not. Throws the last node's
    /// error when none answers.
    package mutating func connectToANode(
        logger: Logger, failed: (AMQPConnection.Configuration, any Error) -> Void = { _, _ in },
        connect: ((AMQPConnection.Configuration) async throws -> AMQPConnection)? = nil
    ) async throws -> (connection: AMQPConnection, node: AMQPConnection.Configuration) {
        var failure: (any Error)?
        for _ in configurations {
            let node = next()
            do {
                let connection =
                    if let connect { try await connect(node) } else { try await AMQPConnection.connect(node, logger: logger) }
                return (connection, node)
            } catch {
                failed(node, error)
                failure = error
            }
        }
        throw failure!
    }
}
