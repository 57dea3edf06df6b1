import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization
import Testing
import TestSupport

/// The settings one `blitline-bridge` process runs with; `environment` is all it sees.
struct BridgeSettings: Sendable {
    var brokerURL: String
    var simulatorURL: String
    var jobsQueue: String
    var eventsExchange: String
    /// `LISTEN_ADDRESS` is 127.0.0.1 on this port.
    var listenPort: Int
    /// The listener that `POSTBACK_BASE_URL` names (`http://127.0.0.1:{port}/blitline`); `nil`
    /// runs the bridge in polling mode.
    var postbackPort: Int?
    var applicationID: String? = BridgeHarness.applicationID
    var secrets: [String]
    var jobTimeout = "60s"
    /// Shorter than the default 10 s, so that tests of timeouts do not wait for nothing; the
    /// tests of the race at the deadline set their own.
    var timeoutGrace = "1s"
    var submitMaxAttempts = 5
    var shutdownTimeout = "10s"
    /// Further variables, e.g. `PREFETCH`, `POLL_RATE`, `MAX_REQUEST_BYTES`.
    var extra: [String: String] = [:]

    var postbackBaseURL: String? { postbackPort.map { "http://127.0.0.1:\($0)/blitline" } }

    var environment: [String: String] {
        var environment = [
            "AMQP_URL": brokerURL,
            "BLITLINE_API_URL": simulatorURL,
            "BLITLINE_POLL_URL": simulatorURL,
            "LISTEN_ADDRESS": "127.0.0.1:\(listenPort)",
            "POSTBACK_SECRET": secrets.joined(separator: ","),
            "JOBS_QUEUE": jobsQueue,
            "EVENTS_EXCHANGE": eventsExchange,
            "JOB_TIMEOUT": jobTimeout,
            "TIMEOUT_GRACE": timeoutGrace,
            "SUBMIT_MAX_ATTEMPTS": String(submitMaxAttempts),
            "SHUTDOWN_TIMEOUT": shutdownTimeout,
            "LOG_LEVEL": "debug",
            "QUEUE_TYPE": TestEnvironment.queueType.rawValue,
        ]
        if let applicationID { environment["BLITLINE_APPLICATION_ID"] = applicationID }
        if let postbackBaseURL { environment["POSTBACK_BASE_URL"] = postbackBaseURL }
        environment.merge(extra) { _, new in new }
        return environment
    }
}

/// One `blitline-bridge` subprocess: started, probed over HTTP, stopped by signal. Its stderr
/// (JSON log lines) goes to `logPath`.
final class BridgeProcess: Sendable {
    let settings: BridgeSettings
    let logPath: String
    let pid: pid_t
    private let process: Mutex<Process>

    var baseURL: String { "http://127.0.0.1:\(settings.listenPort)" }

    /// Launches the bridge; see ``waitUntilReady(timeout:)``.
    init(settings: BridgeSettings, logPath: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.bridgeExecutable)
        process.arguments = []
        process.environment = settings.environment
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.settings = settings
        self.logPath = logPath
        self.pid = process.processIdentifier
        self.process = Mutex(process)
    }

    var isRunning: Bool { process.withLock { $0.isRunning } }

    /// The process id, e.g. to read `/proc/{pid}/status`.
    var processID: pid_t { pid }

    /// The exit status, or `nil` while running or when a signal ended it.
    var exitStatus: Int32? {
        process.withLock { $0.isRunning || $0.terminationReason != .exit ? nil : $0.terminationStatus }
    }

    /// Sends a signal (`SIGTERM`, `SIGKILL`, …) if the process still runs.
    /// The process's peak resident memory so far (`VmHWM`), in bytes; `nil` once it has exited.
    var peakResidentBytes: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes * 1024
    }

    func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Waits for the process to end; returns how long that took, or `nil` on timeout.
    func waitForExit(timeout: Duration) async -> Duration? {
        let started = ContinuousClock.now
        guard await eventually(timeout: timeout, { !isRunning }) else { return nil }
        return ContinuousClock.now - started
    }

    /// Whether its own listener is up: another process may answer on a port it failed to bind.
    var isListening: Bool {
        logLines.contains { $0.contains("Server started and listening on 127.0.0.1:\(settings.listenPort)") }
    }

    /// Waits until the bridge's listener accepts connections or the process has exited.
    func waitUntilListeningOrExited(timeout: Duration = .seconds(30)) async {
        _ = await eventually(timeout: timeout) { !isRunning || isListening }
    }

    /// Waits until `GET /readyz` answers 200 from this process; fails if it exits first.
    func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
        let ready = await eventually(timeout: timeout) { [self] in
            guard isRunning else { return true }
            guard isListening else { return false }
            return (try? await get("/readyz").status) == 200
        }
        try #require(
            isRunning,
            "the bridge exited with status \(exitStatus.map(String.init) ?? "?") before it was ready:\n\(logTail())")
        try #require(ready, "the bridge was not ready within \(timeout):\n\(logTail())")
    }

    struct Answer: Sendable {
        var status: Int
        var text: String
    }

    func get(_ path: String) async throws -> Answer {
        try await Self.send(HTTPClientRequest(url: baseURL + path))
    }

    /// POSTs `body` to `path` on the bridge's listener.
    func post(_ path: String, body: [UInt8], contentType: String? = "application/json") async throws -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        request.body = .bytes(ByteBuffer(bytes: body))
        return try await Self.send(request)
    }

    /// POSTs a body of `size` bytes that declares its length up front but is sent slowly, so
    /// the answer to the headers arrives before the body would be complete (a server that
    /// refuses it by its length answers without reading it).
    func postOversized(_ path: String, size: Int) async throws -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let chunk = 64 << 10
        let chunks = AsyncStream<ByteBuffer> { continuation in
            let feeder = Task {
                var sent = 0
                while sent < size {
                    let count = min(chunk, size - sent)
                    continuation.yield(ByteBuffer(repeating: UInt8(ascii: "{"), count: count))
                    sent += count
                    try await Task.sleep(for: .milliseconds(20))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in feeder.cancel() }
        }
        request.body = .stream(chunks, length: .known(Int64(size)))
        return try await Self.send(request)
    }

    private static func send(_ request: HTTPClientRequest) async throws -> Answer {
        let response = try await HTTPClient.toListener.execute(request, timeout: .seconds(15))
        let body = try await response.body.collect(upTo: 4 << 20)
        return Answer(status: Int(response.status.code), text: String(buffer: body))
    }

    /// The bridge's metrics, parsed from `GET /metrics`.
    func metrics() async throws -> PrometheusSamples {
        let answer = try await get("/metrics")
        try #require(answer.status == 200)
        return PrometheusSamples(text: answer.text)
    }

    /// The last `lines` lines of the bridge's log, for failure messages.
    func logTail(lines: Int = 40) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        let tail = text.split(separator: "\n").suffix(lines).joined(separator: "\n")
        return "--- \(logPath) (last \(lines) lines)\n\(tail)"
    }

    /// The log's lines, each a JSON object.
    var logLines: [String] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}

/// Samples of a Prometheus text exposition, looked up by name and labels.
struct PrometheusSamples: Sendable {
    private var samples: [(name: String, labels: [String: String], value: Double)] = []

    init(text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else {
                samples.append((String(series), [:], value))
                continue
            }
            var labels: [String: String] = [:]
            var rest = series[series.index(after: brace)...].dropLast()
            while let equals = rest.firstIndex(of: "=") {
                let key = rest[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
                let afterQuote = rest.index(equals, offsetBy: 2)
                guard let closing = rest[afterQuote...].firstIndex(of: "\"") else { break }
                labels[key] = String(rest[afterQuote..<closing])
                rest = rest[rest.index(after: closing)...]
            }
            samples.append((String(series[..<brace]), labels, value))
        }
    }

    /// The value of the sample with this name whose labels include `labels`, summed over the
    /// others; 0 when there is none (a counter never incremented is not exported).
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }.reduce(0) { $0 + $1.value }
    }
}
