import Foundation
import Testing

extension BridgeProcessTests {
    /// `amqps://` against the test broker's TLS listener, whose certificate (for `localhost` and
    /// `127.0.0.1`) a CA of its own signed (README, "Configuration"): the peer and its host name are
    /// verified, with the system's CA bundle unless `AMQP_CA_FILE` names one.
    @Suite struct BrokerTLSTests {
        /// `check` with only the broker's settings, and Blitline's URLs pointing nowhere.
        func check(_ environment: [String: String]) async throws -> (broker: String?, run: OperatorQueues.ToolRun) {
            var environment = environment
            environment["BLITLINE_APPLICATION_ID"] = "app"
            environment["BLITLINE_API_URL"] = "http://127.0.0.1:9"
            let run = try await OperatorQueues.runTool(["check"], environment: environment)
            return (run.lines.first { $0.contains(" broker: ") }, run)
        }

        @Test func aJobCompletesOverTLS() async throws {
            let tls = try TestEnvironment.brokerTLS
            try await BridgeHarness.run("tls") { h in
                var settings = try h.settings()
                settings.brokerURL = tls.url
                settings.extra["AMQP_CA_FILE"] = tls.ca
                try await h.startBridge(settings)
                let request = TestRequest.thumbnails("tls-0")
                try await h.outcomes(of: [request]).expectEachCompleted([request])
            }
        }

        /// The system bundle is the default: `SSL_CERT_FILE`, OpenSSL's own variable, stands for a
        /// system bundle that holds the broker's CA; the machine's real bundle does not.
        @Test func withoutACAFileTheSystemBundleVerifiesTheBroker() async throws {
            let tls = try TestEnvironment.brokerTLS
            let trusted = try await check(["AMQP_URL": tls.url, "SSL_CERT_FILE": tls.ca])
            #expect(trusted.broker?.hasPrefix("✔ broker: connected to amqps://") == true, "\(trusted.run)")
            let untrusted = try await check(["AMQP_URL": tls.url])
            #expect(untrusted.broker?.hasPrefix("✘ broker: TLS with localhost:") == true, "\(untrusted.run)")
            #expect(untrusted.broker?.contains("peer cert verification failed") == true, "\(untrusted.run)")
        }

        /// librabbitmq 0.11 checks the host name against the certificate's DNS names only: an
        /// address fails even when the certificate lists it (README, "Configuration").
        @Test func theHostNameIsVerifiedAgainstDNSNamesOnly() async throws {
            let tls = try TestEnvironment.brokerTLS
            let byAddress = tls.url.replacingOccurrences(of: "@localhost:", with: "@127.0.0.1:")
            let result = try await check(["AMQP_URL": byAddress, "AMQP_CA_FILE": tls.ca])
            #expect(result.broker?.contains("hostname verification failed") == true, "\(result.run)")
        }
    }
}
