import AsyncHTTPClient
import Foundation
import Blitline
import BlitlineSimulator
import Logging
import NIOCore
import TestSupport

/// A silent logger for tests.
let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Runs a simulator on 127.0.0.1 port 0 for the duration of `body`, with a Blitline client
/// pointed at it.
func withSimulator<T: Sendable>(
    _ configure: (inout BlitlineSimulator.Configuration) -> Void = { _ in },
    client clientConfigure: (inout BlitlineClient.Configuration) -> Void = { _ in },
    _ body: (BlitlineClient, Int) async throws -> T
) async throws -> T {
    var configuration = BlitlineSimulator.Configuration(port: 0, processingDelay: .zero)
    configure(&configuration)
    let simulator = BlitlineSimulator(configuration: configuration, logger: quietLogger)
    let (ports, portContinuation) = AsyncStream<Int>.makeStream()
    let server = Task { try await simulator.run { port in portContinuation.yield(port) } }
    var iterator = ports.makeAsyncIterator()
    guard let port = await iterator.next() else { throw CancellationError() }
    var clientConfiguration = BlitlineClient.Configuration(
        apiURL: "http://127.0.0.1:\(port)",
        pollURL: "http://127.0.0.1:\(port)",
        submitTimeout: .seconds(5),
        pollTimeout: .seconds(5)
    )
    clientConfigure(&clientConfiguration)
    let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration.httpClientConfiguration)
    let client = BlitlineClient(httpClient: httpClient, configuration: clientConfiguration, logger: quietLogger)
    let result: Result<T, any Error>
    do {
        result = .success(try await body(client, port))
    } catch {
        result = .failure(error)
    }
    try await httpClient.shutdown()
    server.cancel()
    _ = await server.result
    return try result.get()
}

/// Sends a request with a JSON body to the simulator's control endpoint.
/// Runs `body` with a client of a Blitline that answers every request with a status line, headers
/// and the first bytes of a body, then stalls (`Ports.stallingServer`).
func withStalledAnswers<T: Sendable>(
    client clientConfigure: (inout BlitlineClient.Configuration) -> Void,
    _ body: (BlitlineClient) async throws -> T
) async throws -> T {
    let (listener, port) = try Ports.stallingServer(
        answering: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{\"results\":")
    defer {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
    var configuration = BlitlineClient.Configuration(apiURL: "http://127.0.0.1:\(port)", pollURL: "http://127.0.0.1:\(port)")
    clientConfigure(&configuration)
    let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration.httpClientConfiguration)
    let client = BlitlineClient(httpClient: httpClient, configuration: configuration, logger: quietLogger)
    let result: Result<T, any Error>
    do {
        result = .success(try await body(client))
    } catch {
        result = .failure(error)
    }
    try await httpClient.shutdown()
    return try result.get()
}

func control(_ port: Int, _ json: String) async throws {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/_control")
    request.method = .POST
    request.body = .bytes(ByteBuffer(string: json))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
    _ = try await response.body.collect(upTo: 1 << 16)
}

/// The simulator's counters.
func stats(_ port: Int) async throws -> JSONValue {
    let response = try await HTTPClient.shared.execute(
        HTTPClientRequest(url: "http://127.0.0.1:\(port)/_control/stats"),
        timeout: .seconds(5)
    )
    return try JSONValue(parsing: Array(buffer: try await response.body.collect(upTo: 1 << 16)))
}

/// Waits until each named counter of the simulator's `/_control/stats` reads its value; returns
/// the counters as last read. The simulator counts a postback's answer after the receiver has
/// answered it, so a test that has seen the postback arrive reads the count a moment later.
func statsOnceSettled(_ port: Int, _ expected: [String: Int], timeout: Duration = .seconds(10)) async -> JSONValue? {
    var last: JSONValue?
    _ = await eventually(timeout: timeout) {
        last = try? await stats(port)
        return expected.allSatisfy { last?[$0.key] == .number($0.value) }
    }
    return last
}

/// A job for the simulator, optionally with extra members.
func job(_ extra: String = "", src: String = "https://example.com/photo.jpg", function: String = "resize_to_fit") -> BlitlineJob {
    let text = #"{"application_id":"app","src":"\#(src)","v":1.22,"functions":[{"name":"\#(function)","params":{"width":100},"save":{"image_identifier":"thumb"}}]\#(extra)}"#
    return BlitlineJob(json: try! JSONValue(parsing: text))!
}
