import Foundation
import AMQP
import Testing

@Suite struct AMQPConfigurationTests {
    @Test func parsesEveryPartOfTheURL() throws {
        let configuration = try AMQPConnection.Configuration(
            url: "amqp://us%40er:p%3Ass@broker.example:5673/my%2Fvhost?heartbeat=10&connection_timeout=2500")
        #expect(configuration.username == "us@er")
        #expect(configuration.password == "p:ss")
        #expect(configuration.host == "broker.example")
        #expect(configuration.port == 5673)
        #expect(configuration.virtualHost == "my/vhost")
        #expect(configuration.heartbeat == .seconds(10))
        #expect(configuration.connectTimeout == .milliseconds(2500))
        #expect(configuration.tls == nil)
    }

    @Test func appliesDefaults() throws {
        let plain = try AMQPConnection.Configuration(url: "amqp://")
        #expect(plain.host == "127.0.0.1" && plain.port == 5672 && plain.virtualHost == "/")
        #expect(plain.username == "guest" && plain.password == "guest")
        #expect(plain.heartbeat == .seconds(30))
        let encodedRoot = try AMQPConnection.Configuration(url: "amqp://h/%2F")
        #expect(encodedRoot.virtualHost == "/")
    }

    @Test func amqpsVerifiesPeersAndTakesACAFile() throws {
        let configuration = try AMQPConnection.Configuration(
            url: "amqps://u:p@secure.example/vh?cacertfile=/etc/ca.pem")
        #expect(configuration.port == 5671)
        let tls = try #require(configuration.tls)
        #expect(tls.caFile == "/etc/ca.pem")
        #expect(tls.verifyPeer && tls.verifyHostname)
    }

    /// Without a CA file, `amqps://` verifies the broker with the system's bundle (librabbitmq 0.11
    /// would load none), or OpenSSL's `SSL_CERT_FILE` when it names one.
    @Test func amqpsWithoutACAFileUsesTheSystemBundle() throws {
        #expect(try AMQPConnection.Configuration(url: "amqps://secure.example").tls?.caFile == nil)
        let bundle = try #require(AMQPConnection.Configuration.TLS.systemCABundle(environment: [:]))
        #expect(FileManager.default.isReadableFile(atPath: bundle))
        #expect(AMQPConnection.Configuration.TLS.systemCABundle(environment: ["SSL_CERT_FILE": "/etc/mine.pem"]) == "/etc/mine.pem")
    }

    @Test func parsesIPv6Hosts() throws {
        let configuration = try AMQPConnection.Configuration(url: "amqp://[::1]:5680")
        #expect(configuration.host == "::1" && configuration.port == 5680)
    }

    @Test(arguments: [
        "http://host", "amqp://host:99999", "amqp://host/a/b", "amqp://host/%zz",
        "amqp://host?heartbeat=soon", "amqp://host?cacertfile=/x",
        // Out of AMQP's ranges: librabbitmq would be handed a frame_max of 0 (no room for a
        // frame), and Int32 conversions of the larger ones trap.
        "amqp://host?frame_max=0", "amqp://host?frame_max=4095", "amqp://host?frame_max=4294967296",
        "amqp://host?channel_max=65536", "amqp://host?heartbeat=65536", "amqp://host?heartbeat=9999999999",
    ])
    func rejectsBadURLs(url: String) {
        #expect(throws: AMQPError.self) { try AMQPConnection.Configuration(url: url) }
    }

    @Test func descriptionHidesThePassword() throws {
        let configuration = try AMQPConnection.Configuration(url: "amqp://user:secret@h/v")
        #expect(!"\(configuration)".contains("secret"))
    }
}
