import AMQP

extension BridgeConfiguration {
    /// The connection settings of `AMQP_URL` with `AMQP_CA_FILE`, under a name the management UI
    /// shows.
    func brokerConfiguration(connectionName: String) throws -> AMQPConnection.Configuration {
        var configuration = try AMQPConnection.Configuration(url: amqpURL)
        if let amqpCAFile { configuration.tls?.caFile = amqpCAFile }
        configuration.connectionName = connectionName
        return configuration
    }
}
