import AMQP
import Foundation

extension BridgeConfiguration {
    /// The broker nodes of `AMQP_URL` with `AMQP_CA_FILE`, under a name the management UI shows:
    /// `name` followed by this host's name and process id, so that an operator tells instances
    /// apart. A `connection_name` in a URL is kept as it is. The connection's thread is called
    /// `amqp` and the name's last word (`amqp consumer`).
    func brokerEndpoints(connectionName name: String) throws -> AMQPEndpoints {
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

    /// The first node of `AMQP_URL`, for the operator tools (see `brokerEndpoints`).
    package func brokerConfiguration(connectionName name: String) throws -> AMQPConnection.Configuration {
        var endpoints = try brokerEndpoints(connectionName: name)
        return endpoints.next()
    }
}
