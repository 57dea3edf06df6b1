import Foundation
import Logging
import Testing

@testable import BlitlineBridge

@Suite struct BridgeConfigurationTests {
    /// README's "Configuration" table: variable, flag, default as help shows it.
    static let contractTable: [(variable: String, flag: String, defaultText: String)] = [
        ("AMQP_URL", "--amqp-url", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        ("AMQP_CA_FILE", "--amqp-ca-file", "none"),
        ("BLITLINE_API_URL", "--blitline-api-url", "https://api.blitline.com"),
        ("BLITLINE_POLL_URL", "--blitline-poll-url", "https://cache.blitline.com"),
        ("BLITLINE_SUBMIT_TIMEOUT", "--blitline-submit-timeout", "30s"),
        ("BLITLINE_APPLICATION_ID", "--blitline-application-id", "none"),
        ("LISTEN_ADDRESS", "--listen-address", "0.0.0.0:8080"),
        ("POSTBACK_BASE_URL", "--postback-base-url", "none"),
        ("POSTBACK_SECRET", "--postback-secret", "none"),
        ("JOBS_QUEUE", "--jobs-queue", "blitline.jobs"),
        ("EVENTS_EXCHANGE", "--events-exchange", "blitline.events"),
        ("EVENT_SOURCE", "--event-source", "blitline-bridge"),
        ("PREFETCH", "--prefetch", "64"),
        ("EVENT_LOOPS", "--event-loops", "1"),
        ("SUBMIT_MAX_ATTEMPTS", "--submit-max-attempts", "5"),
        ("MAX_REDELIVERIES", "--max-redeliveries", "5"),
        ("QUEUE_TYPE", "--queue-type", "quorum"),
        ("AMQP_URL_FILE", "--amqp-url-file", "none"),
        ("BLITLINE_APPLICATION_ID_FILE", "--blitline-application-id-file", "none"),
        ("POSTBACK_SECRET_FILE", "--postback-secret-file", "none"),
        ("JOB_TIMEOUT", "--job-timeout", "30m"),
        ("TIMEOUT_GRACE", "--timeout-grace", "10s"),
        ("POLL_RATE", "--poll-rate", "5"),
        ("POLL_CONCURRENCY", "--poll-concurrency", "none"),
        ("MAX_REQUEST_BYTES", "--max-request-bytes", "1048576"),
        ("SHUTDOWN_TIMEOUT", "--shutdown-timeout", "25s"),
        ("LOG_LEVEL", "--log-level", "info"),
        ("HEALTH_ADDRESS", "--health-address", "none"),
        ("LISTEN_MAX_CONNECTIONS", "--listen-max-connections", "512"),
        ("LISTEN_HEADER_TIMEOUT", "--listen-header-timeout", "10s"),
        ("LISTEN_BODY_TIMEOUT", "--listen-body-timeout", "10s"),
        ("LISTEN_MAX_BUFFERED_BYTES", "--listen-max-buffered-bytes", "33554432"),
        ("LISTEN_MAX_PENDING_POSTBACKS", "--listen-max-pending-postbacks", "256"),
    ]

    static let secret = "s3cr3t-0123456789-0123456789-abcdef"
    static let otherSecret = "0ther-0123456789-0123456789-abcdefgh"

    func parse(_ environment: [String: String] = [:], _ arguments: [String] = []) throws -> BridgeConfiguration {
        try BridgeConfiguration(environment: environment, arguments: arguments)
    }

    func failure(_ environment: [String: String] = [:], _ arguments: [String] = []) -> ConfigurationError? {
        do {
            _ = try BridgeConfiguration(environment: environment, arguments: arguments)
            return nil
        } catch {
            return error
        }
    }

    /// Two deployments whose request ids overlap tell their events apart by `source`.
    @Test func eventSourceNamesTheVhostAndTheJobsQueue() throws {
        #expect(try parse().eventSourceResolved == "blitline-bridge")
        let configuration = try parse([
            "EVENT_SOURCE": "/blitline-bridge/{vhost}/{JOBS_QUEUE}", "AMQP_URL": "amqp://u:p@h/images%2Fprod",
            "JOBS_QUEUE": "thumbs.jobs",
        ])
        #expect(configuration.eventSourceResolved == "/blitline-bridge/images%2Fprod/thumbs.jobs")
        #expect(JobEvent.failure(
            RequestEnvelope(requestID: "r1", correlationID: nil, replyTo: nil, traceparent: nil),
            reason: .invalidRequest, message: "m"
        ).json(source: configuration.eventSourceResolved)["source"]?.stringValue == "/blitline-bridge/images%2Fprod/thumbs.jobs")
        #expect(try parse(["EVENT_SOURCE": "/b/{vhost}"]).eventSourceResolved == "/b/%2F")
        #expect(failure(["EVENT_SOURCE": "two words"]) != nil)
        #expect(failure(["EVENT_SOURCE": String(repeating: "s", count: 256)]) != nil)
    }

    @Test func defaultsAreTheContractTable() throws {
        let configuration = try parse()
        #expect(configuration.amqpURL == "amqp://guest:guest@127.0.0.1:5672/%2F")
        #expect(configuration.amqpCAFile == nil)
        #expect(configuration.blitlineAPIURL == "https://api.blitline.com")
        #expect(configuration.blitlinePollURL == "https://cache.blitline.com")
        #expect(configuration.blitlineApplicationID == nil)
        #expect(configuration.listenHost == "0.0.0.0")
        #expect(configuration.listenPort == 8080)
        #expect(configuration.postbackBaseURL == nil)
        #expect(configuration.postbackSecrets.isEmpty)
        #expect(!configuration.usesPostbacks)
        #expect(configuration.jobsQueue == "blitline.jobs")
        #expect(configuration.eventsExchange == "blitline.events")
        #expect(configuration.prefetch == 64)
        #expect(configuration.submitMaxAttempts == 5)
        #expect(configuration.jobTimeout == .seconds(1800))
        #expect(configuration.pollRate == 5)
        #expect(configuration.maxRequestBytes == 1_048_576)
        #expect(configuration.shutdownTimeout == .seconds(25))
        #expect(configuration.logLevel == .info)
    }

    @Test func readsEveryVariableFromTheEnvironment() throws {
        let caFile = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-ca-\(UUID()).pem").path
        try #require(FileManager.default.createFile(atPath: caFile, contents: Data("-----BEGIN CERTIFICATE-----\n".utf8)))
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let configuration = try parse([
            "AMQP_URL": "amqps://bridge:pw@rabbit.internal:5671/jobs",
            "AMQP_CA_FILE": caFile,
            "BLITLINE_API_URL": "http://127.0.0.1:8090/",
            "BLITLINE_POLL_URL": "http://127.0.0.1:8091",
            "BLITLINE_APPLICATION_ID": "app-1",
            "LISTEN_ADDRESS": "127.0.0.1:9000",
            "POSTBACK_BASE_URL": "https://bridge.example.com/blitline/",
            "POSTBACK_SECRET": "\(Self.secret), \(Self.otherSecret)\n",
            "JOBS_QUEUE": "images.jobs",
            "EVENTS_EXCHANGE": "images.events",
            "PREFETCH": "256",
            "EVENT_LOOPS": "4",
            "SUBMIT_MAX_ATTEMPTS": "3",
            "JOB_TIMEOUT": "10m",
            "POLL_RATE": "2.5",
            "POLL_CONCURRENCY": "500",
            "MAX_REQUEST_BYTES": "65536",
            "SHUTDOWN_TIMEOUT": "250ms",
            "LOG_LEVEL": "DEBUG",
            "UNRELATED": "ignored",
        ])
        #expect(configuration.amqpURL == "amqps://bridge:pw@rabbit.internal:5671/jobs")
        #expect(configuration.amqpCAFile == caFile)
        #expect(configuration.blitlineAPIURL == "http://127.0.0.1:8090")
        #expect(configuration.blitlinePollURL == "http://127.0.0.1:8091")
        #expect(configuration.blitlineApplicationID == "app-1")
        #expect(configuration.listenHost == "127.0.0.1")
        #expect(configuration.listenPort == 9000)
        #expect(configuration.postbackBaseURL == "https://bridge.example.com/blitline")
        #expect(configuration.postbackSecrets == [Self.secret, Self.otherSecret])
        #expect(configuration.usesPostbacks)
        #expect(configuration.jobsQueue == "images.jobs")
        #expect(configuration.eventsExchange == "images.events")
        #expect(configuration.prefetch == 256)
        #expect(configuration.eventLoops == 4)
        #expect(configuration.submitMaxAttempts == 3)
        #expect(configuration.jobTimeout == .seconds(600))
        #expect(configuration.pollRate == 2.5)
        #expect(configuration.effectivePollConcurrency == 500)
        #expect(configuration.maxRequestBytes == 65536)
        #expect(configuration.shutdownTimeout == .milliseconds(250))
        #expect(configuration.logLevel == .debug)
    }

    @Test func flagsTakeBothFormsAndOverrideTheEnvironment() throws {
        let configuration = try parse(
            ["PREFETCH": "10", "JOB_TIMEOUT": "1h", "JOBS_QUEUE": "from.env", "LOG_LEVEL": "error"],
            ["--prefetch", "20", "--job-timeout=90", "--log-level=trace", "--listen-address", "[::]:0"]
        )
        #expect(configuration.prefetch == 20)
        #expect(configuration.jobTimeout == .seconds(90))
        #expect(configuration.logLevel == .trace)
        #expect(configuration.jobsQueue == "from.env")
        #expect(configuration.listenHost == "::")
        #expect(configuration.listenPort == 0)
    }

    @Test func anEmptyValueStandsForTheDefault() throws {
        let configuration = try parse(["POSTBACK_BASE_URL": "", "PREFETCH": "8"], ["--prefetch="])
        #expect(configuration.postbackBaseURL == nil)
        #expect(configuration.prefetch == 64)
    }

    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)),
        ("30s", .seconds(30)),
        ("10m", .seconds(600)),
        ("1h", .seconds(3600)),
        ("45", .seconds(45)),
        ("0.5", .milliseconds(500)),
        ("1.5m", .seconds(90)),
    ])
    func durations(text: String, expected: Duration) throws {
        #expect(try parse(["JOB_TIMEOUT": text]).jobTimeout == expected)
        #expect(try parse([:], ["--shutdown-timeout", text]).shutdownTimeout == expected)
    }

    @Test(arguments: [
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        ("127.0.0.1:0", "127.0.0.1", 0),
        ("[::]:8080", "::", 8080),
        ("[::1]:65535", "::1", 65535),
        ("localhost:80", "localhost", 80),
        (":9090", "0.0.0.0", 9090),
    ])
    func listenAddresses(text: String, host: String, port: Int) throws {
        let configuration = try parse(["LISTEN_ADDRESS": text])
        #expect(configuration.listenHost == host)
        #expect(configuration.listenPort == port)
    }

    /// Variable, bad value, and a piece of the accepted form the message must carry.
    static let badValues: [(variable: String, value: String, form: String)] = [
        ("AMQP_URL", "http://rabbit:5672", "amqp://user:password@host:port/vhost"),
        ("AMQP_URL", "amqp://rabbit:99999/", "amqp://user:password@host:port/vhost"),
        ("AMQP_CA_FILE", "/nonexistent/ca.pem", "readable PEM file"),
        ("BLITLINE_API_URL", "api.blitline.com", "absolute http:// or https:// URL"),
        ("BLITLINE_API_URL", "ftp://api.blitline.com", "absolute http:// or https:// URL"),
        ("BLITLINE_POLL_URL", "https://", "absolute http:// or https:// URL"),
        ("LISTEN_ADDRESS", "8080", "host:port"),
        ("LISTEN_ADDRESS", "0.0.0.0:70000", "host:port"),
        ("LISTEN_ADDRESS", "::1:8080", "host:port"),
        ("LISTEN_ADDRESS", "0.0.0.0:http", "host:port"),
        ("POSTBACK_BASE_URL", "bridge.example.com/blitline", "absolute http:// or https:// URL without query"),
        ("POSTBACK_BASE_URL", "https://bridge.example.com/cb?x=1", "absolute http:// or https:// URL without query"),
        ("JOBS_QUEUE", String(repeating: "q", count: 201), "1 to 200 bytes"),
        ("JOBS_QUEUE", "amq.jobs", "1 to 200 bytes"),
        ("EVENTS_EXCHANGE", String(repeating: "e", count: 201), "1 to 200 bytes"),
        ("PREFETCH", "0", "from 1 to 65535"),
        ("PREFETCH", "65536", "from 1 to 65535"),
        ("PREFETCH", "-1", "from 1 to 65535"),
        ("PREFETCH", "many", "from 1 to 65535"),
        ("EVENT_LOOPS", "0", "from 1 to 256"),
        ("EVENT_LOOPS", "257", "from 1 to 256"),
        ("SUBMIT_MAX_ATTEMPTS", "0", "from 1 to 1000"),
        ("SUBMIT_MAX_ATTEMPTS", "2.5", "from 1 to 1000"),
        ("SUBMIT_MAX_ATTEMPTS", "9223372036854775807", "from 1 to 1000"),
        ("MAX_REDELIVERIES", "-1", "from 0 to 19"),
        ("MAX_REDELIVERIES", "20", "from 0 to 19"),
        ("QUEUE_TYPE", "mirrored", "quorum or classic"),
        ("JOB_TIMEOUT", "soon", "250ms, 30s, 10m, 1h or bare seconds"),
        ("JOB_TIMEOUT", "0", "250ms, 30s, 10m, 1h or bare seconds"),
        ("JOB_TIMEOUT", "-5s", "250ms, 30s, 10m, 1h or bare seconds"),
        ("JOB_TIMEOUT", "1d", "250ms, 30s, 10m, 1h or bare seconds"),
        ("JOB_TIMEOUT", "inf", "250ms, 30s, 10m, 1h or bare seconds"),
        ("SHUTDOWN_TIMEOUT", "1e3", "250ms, 30s, 10m, 1h or bare seconds"),
        ("SHUTDOWN_TIMEOUT", "0ms", "250ms, 30s, 10m, 1h or bare seconds"),
        ("POLL_RATE", "0", "greater than 0"),
        ("POLL_RATE", "fast", "greater than 0"),
        ("POLL_RATE", "nan", "greater than 0"),
        ("POLL_CONCURRENCY", "0", "from 1 to 65535"),
        ("POLL_CONCURRENCY", "65536", "from 1 to 65535"),
        ("MAX_REQUEST_BYTES", "0", "at least 1"),
        ("MAX_REQUEST_BYTES", "1MB", "at least 1"),
        ("LOG_LEVEL", "verbose", "trace, debug, info, notice, warning, error or critical"),
    ]

    @Test(arguments: badValues)
    func aBadValueNamesTheVariableTheFlagAndTheForm(variable: String, value: String, form: String) throws {
        let flag = "--" + variable.lowercased().replacingOccurrences(of: "_", with: "-")
        for error in [failure([variable: value]), failure([:], [flag, value]), failure([:], ["\(flag)=\(value)"])] {
            let error = try #require(error)
            #expect(error.variable == variable)
            #expect(error.code == .invalidValue)
            #expect(error.description.hasPrefix("\(variable) (\(flag)): "))
            #expect(error.description.contains(form))
            #expect(!error.description.contains("\n"))
        }
    }

    /// A deadline waits in a queue whose message TTL is `JOB_TIMEOUT` + `TIMEOUT_GRACE`, and
    /// RabbitMQ takes a TTL of at most 2³² − 1 ms (about 49.7 days): a longer one is refused here,
    /// naming the variable, not by the broker at start-up.
    @Test func aJobTimeoutTheBrokerCannotHoldIsRefused() throws {
        let longest = "4294957295ms"  // with the default grace of 10 s, exactly the broker's limit
        #expect(try parse(["JOB_TIMEOUT": longest]).jobTimeout == .milliseconds(4_294_957_295))
        for environment in [["JOB_TIMEOUT": "4294957296ms"], ["JOB_TIMEOUT": "1200h"], ["JOB_TIMEOUT": longest, "TIMEOUT_GRACE": "11s"]] {
            let error = try #require(failure(environment), "\(environment)")
            #expect(error.variable == "JOB_TIMEOUT")
            #expect(error.description.contains("4294967295 ms"), "\(error)")
        }
    }

    @Test func theMessageQuotesTheValue() throws {
        let error = try #require(failure(["JOB_TIMEOUT": "soon"]))
        #expect(error.description == #"JOB_TIMEOUT (--job-timeout): "soon" is not a duration; use 250ms, 30s, 10m, 1h or bare seconds"#)
    }

    @Test func postbacksNeedASecretOfAtLeast32Bytes() throws {
        let missing = try #require(failure(["POSTBACK_BASE_URL": "https://bridge.example.com"]))
        #expect(missing.variable == "POSTBACK_SECRET")
        #expect(missing.code == .missingValue)
        #expect(missing.description.contains("POSTBACK_SECRET (--postback-secret)"))
        #expect(missing.description.contains("POSTBACK_BASE_URL"))
        #expect(missing.description.contains("at least 32 bytes"))

        let exactly32 = String(repeating: "k", count: 32)
        #expect(try parse(["POSTBACK_BASE_URL": "https://b.example.com", "POSTBACK_SECRET": exactly32]).postbackSecrets == [exactly32])
        let short = try #require(failure(["POSTBACK_SECRET": "\(Self.secret),\(String(repeating: "k", count: 31))"]))
        #expect(short.variable == "POSTBACK_SECRET")
        #expect(short.description.contains("secret 2"))
        #expect(short.description.contains("at least 32 bytes"))
        #expect(failure(["POSTBACK_SECRET": "\(Self.secret),"]) != nil)
    }

    @Test func secretsAreNeverEchoed() throws {
        let shortSecret = "hunter2-hunter2"
        let errors = [
            failure(["POSTBACK_SECRET": shortSecret]),
            failure([:], ["--postback-secret", "\(Self.secret),\(shortSecret)"]),
            failure(["AMQP_URL": "amqp://bridge:hunter2-hunter2@rabbit:notaport/"]),
            failure(["AMQP_URL": "amqp://bridge:hunter2-hunter2%zz@rabbit/"]),
            failure(["AMQP_URL": "https://bridge:hunter2-hunter2@rabbit/"]),
            failure(["AMQP_URL": "amqp://a:hunter2-one@n1/,amqp://b:hunter2-two@n2:bad/,amqp://c:hunter2-3@n3/"]),
            failure(["AMQP_URL": "amqp://a:hunter2-one@n1/,,amqp://c:hunter2-3@n3/"]),
            // Passwords with characters a URL must escape, written unescaped: the URL does not
            // parse where the password was meant to end, and is still never shown.
            failure(["AMQP_URL": "amqp://bridge:hunter2/x@rabbit:5672/%2F"]),
            failure(["AMQP_URL": "amqp://bridge:hunter2?x@rabbit:5672/%2F"]),
            failure(["AMQP_URL": "amqp://bridge:hunter2,x@rabbit:5672/%2F"]),
            failure(["AMQP_URL": "amqp://a:b@n1/,amqp://bridge:hunter2/x@rabbit/"]),
        ]
        for error in errors {
            let error = try #require(error)
            #expect(!error.description.contains("hunter2"), "\(error)")
        }
        let configuration = try parse([
            "AMQP_URL": "amqp://bridge:hunter2-hunter2@rabbit/",
            "POSTBACK_SECRET": Self.secret,
            "BLITLINE_APPLICATION_ID": "app-hunter2",
        ])
        #expect(!configuration.description.contains("hunter2"))
        #expect(!configuration.description.contains(Self.secret))
        #expect(configuration.description.contains("amqp://bridge:***@rabbit/"))
        #expect(!BridgeConfiguration.helpText.contains("hunter2"))
    }

    @Test func secretsAreReadFromFilesButNotTogetherWithTheirVariable() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func file(_ name: String, _ text: String) throws -> String {
            let path = directory.appendingPathComponent(name).path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let configuration = try parse([
            "AMQP_URL_FILE": try file("url", "amqp://bridge:from-a-file@rabbit/\n"),
            "BLITLINE_APPLICATION_ID_FILE": try file("app", "app-from-a-file\n"),
            "POSTBACK_SECRET_FILE": try file("secret", Self.secret + "\n"),
        ])
        #expect(configuration.amqpURL == "amqp://bridge:from-a-file@rabbit/")
        #expect(configuration.blitlineApplicationID == "app-from-a-file")
        #expect(configuration.postbackSecrets == [Self.secret])

        let both = try #require(failure(["POSTBACK_SECRET": Self.secret, "POSTBACK_SECRET_FILE": try file("s2", Self.secret)]))
        #expect(both.description.contains("POSTBACK_SECRET or POSTBACK_SECRET_FILE, not both"), "\(both)")
        let missing = try #require(failure(["AMQP_URL_FILE": directory.appendingPathComponent("absent").path]))
        #expect(missing.description.hasPrefix("AMQP_URL_FILE (--amqp-url-file): cannot read"), "\(missing)")
        let short = try #require(failure(["POSTBACK_SECRET_FILE": try file("short", "hunter2-hunter2")]))
        #expect(short.description.contains("32 bytes") && !short.description.contains("hunter2"), "\(short)")
    }

    @Test func placeholdersOfTheDeployFolderAreRefused() throws {
        for (variable, value) in [
            ("POSTBACK_SECRET", "REPLACE_ME_with_at_least_32_random_bytes_openssl_rand_base64_48"),
            ("BLITLINE_APPLICATION_ID", "REPLACE_ME_blitline_application_id"),
            ("AMQP_URL", "amqp://blitline:REPLACE_ME_broker_password@rabbitmq.example.internal:5672/%2F"),
        ] {
            let error = try #require(failure([variable: value]), "\(variable)")
            #expect(error.description.contains("placeholder"), "\(error)")
            #expect(!error.description.contains("REPLACE_ME_"), "the value is not shown: \(error)")
        }
    }

    @Test func severalBrokerURLsAreTheNodesOfOneCluster() throws {
        let configuration = try parse([
            "AMQP_URL": "amqp://a:pw-one@rabbit-1:5672/jobs, amqp://a:pw-two@rabbit-2:5673/jobs,amqp://a:pw-3@rabbit-3/jobs"
        ])
        let nodes = try configuration.brokerEndpoints(connectionName: "blitline-bridge consumer").configurations
        #expect(nodes.map(\.host) == ["rabbit-1", "rabbit-2", "rabbit-3"])
        #expect(nodes.map(\.port) == [5672, 5673, 5672])
        #expect(nodes.allSatisfy { $0.virtualHost == "jobs" })
        // Instances are told apart in the management UI by host name and process id.
        #expect(nodes.allSatisfy { $0.connectionName == "blitline-bridge consumer (\(ProcessInfo.processInfo.hostName) pid \(getpid()))" })
        #expect(configuration.description.contains("amqp://a:***@rabbit-1:5672/jobs, amqp://a:***@rabbit-2:5673/jobs,amqp://a:***@rabbit-3/jobs"))
        let named = try parse(["AMQP_URL": "amqp://rabbit/?connection_name=mine"])
        #expect(try named.brokerEndpoints(connectionName: "x").configurations[0].connectionName == "mine")
        let error = try #require(failure(["AMQP_URL": "amqp://a:pw-one@n1/,http://n2/"]))
        #expect(error.description.contains("URL 2 of 2"), "\(error)")
    }

    @Test func argumentsThatAreNotSettingsAreErrors() throws {
        let unknown = try #require(failure([:], ["--amqp-uri", "amqp://x"]))
        #expect(unknown.code == .unknownFlag)
        #expect(unknown.description.contains("--amqp-uri"))
        let stray = try #require(failure([:], ["serve"]))
        #expect(stray.code == .unexpectedArgument)
        let missing = try #require(failure([:], ["--prefetch"]))
        #expect(missing.code == .missingValue)
        #expect(missing.description.hasPrefix("PREFETCH (--prefetch): "))
        #expect(failure([:], ["--prefetch", "--log-level", "debug"])?.code == .missingValue)
        #expect(failure([:], ["--PREFETCH=5"])?.code == .unknownFlag)
    }

    @Test func helpListsEveryVariableWithItsFlagAndDefault() {
        let help = BridgeConfiguration.helpText
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for row in Self.contractTable {
            guard let header = lines.firstIndex(where: { $0.hasPrefix("  \(row.variable), \(row.flag) ") }) else {
                Issue.record("\(row.variable) is not in the help")
                continue
            }
            let block = lines[(header + 1)...].prefix { $0.hasPrefix("      ") }
            #expect(block.contains("      Default: \(row.defaultText)"), "\(row.variable)")
        }
        #expect(lines.allSatisfy { $0.count <= 80 })
    }

    @Test func everyFlagInTheHelpIsAccepted() throws {
        let flags = BridgeConfiguration.helpText.split(separator: "\n")
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") && $0.contains(", --") && !$0.contains("-h,") }
            .map { $0.split(separator: " ")[1] }
        #expect(flags.count == Self.contractTable.count)
        for flag in flags {
            #expect(failure([:], [String(flag)])?.code == .missingValue)
        }
    }
}
