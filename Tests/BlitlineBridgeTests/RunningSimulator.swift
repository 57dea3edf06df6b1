import AsyncHTTPClient
import Blitline
import BlitlineSimulator
import Logging
import NIOCore
import Testing

/// The Blitline simulator, run in-process on 127.0.0.1 port 0 for one test.
final class RunningSimulator: Sendable {
    let port: Int
    private let server: Task<Void, any Error>

    /// The simulator's base URL, for `BLITLINE_API_URL` and `BLITLINE_POLL_URL`.
    var url: String { "http://127.0.0.1:\(port)" }

    private init(port: Int, server: Task<Void, any Error>) {
        self.port = port
        self.server = server
    }

    /// Starts a simulator that processes jobs in 50 ms and retries postbacks `retrySpeedFactor`
    /// times Blitline's schedule (1 s, 3 s, 15 s, 10 min).
    static func start(
        retrySpeedFactor: Double = 0.05,
        _ configure: (inout BlitlineSimulator.Configuration) -> Void = { _ in }
    ) async throws -> RunningSimulator {
        var configuration = BlitlineSimulator.Configuration(
            port: 0, processingDelay: .milliseconds(50), retrySpeedFactor: retrySpeedFactor,
            postbackTimeout: .seconds(15))
        configure(&configuration)
        let simulator = BlitlineSimulator(
            configuration: configuration, logger: Logger(label: "simulator") { _ in SwiftLogNoOpLogHandler() })
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let server = Task {
            defer { portContinuation.finish() }
            try await simulator.run { port in portContinuation.yield(port) }
        }
        guard let port = await ports.first(where: { _ in true }) else {
            _ = await server.result
            throw SimulatorDidNotStart()
        }
        return RunningSimulator(port: port, server: server)
    }

    struct SimulatorDidNotStart: Error {}

    /// Changes the fault plan through `POST /_control`.
    func control(_ settings: JSONValue) async throws {
        var request = HTTPClientRequest(url: "\(url)/_control")
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: settings.jsonBytes))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 16)
        try #require(response.status == .ok, "the simulator refused \(settings.jsonString): \(String(buffer: body))")
    }

    /// The counters of `GET /_control/stats`.
    func stats() async throws -> SimulatorCounters {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: "\(url)/_control/stats"), timeout: .seconds(5))
        let json = try JSONValue(parsing: Array(buffer: try await response.body.collect(upTo: 1 << 16)))
        return SimulatorCounters(json: json)
    }

    /// The postbacks the simulator dropped: where each should have gone, and what it would have said.
    func droppedPostbacks() async throws -> [(jobID: String, url: String, body: [UInt8])] {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: "\(url)/_control/dropped_postbacks"), timeout: .seconds(5))
        let json = try JSONValue(parsing: Array(buffer: try await response.body.collect(upTo: 64 << 20)))
        return (json.arrayValue ?? []).compactMap { record in
            guard let jobID = record["job_id"]?.stringValue, let url = record["postback_url"]?.stringValue,
                let body = record["body"]?.stringValue
            else { return nil }
            return (jobID, url, Array(body.utf8))
        }
    }

    func stop() async {
        server.cancel()
        _ = await server.result
    }
}

/// The simulator's counters, by the names `/_control/stats` gives them.
struct SimulatorCounters: Sendable {
    let json: JSONValue

    subscript(_ name: String) -> Int { json[name]?.intValue ?? -1 }
}
