import Hummingbird
import Synchronization
import TestSupport

/// A postback endpoint for tests: records each request and answers with scripted statuses.
final class PostbackReceiver: Sendable {
    struct Received: Sendable {
        var at: ContinuousClock.Instant
        var contentType: String?
        var headers: [String: String]
        var body: [UInt8]
    }

    private let received = Mutex<[Received]>([])
    private let statuses: Mutex<[HTTPResponse.Status]>
    private let answerDelay: Duration
    private let inHand = Mutex((now: 0, most: 0))

    /// Answers `statuses` in turn, then 200, each `answerDelay` after the request arrived.
    init(statuses: [HTTPResponse.Status] = [], answerDelay: Duration = .zero) {
        self.statuses = Mutex(statuses)
        self.answerDelay = answerDelay
    }

    /// The most requests it has held unanswered at once.
    var mostInHand: Int { self.inHand.withLock { $0.most } }

    var requests: [Received] { self.received.withLock { $0 } }

    /// Serves on 127.0.0.1 port 0 while `body` runs, passing the postback URL.
    func serve<T: Sendable>(_ body: (String) async throws -> T) async throws -> T {
        let router = Router()
        router.post("/postback") { request, _ -> Response in
            var request = request
            let bytes = Array(buffer: try await request.collectBody(upTo: 1 << 20))
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            self.received.withLock {
                $0.append(Received(at: .now, contentType: request.headers[.contentType], headers: headers, body: bytes))
            }
            let status = self.statuses.withLock { $0.isEmpty ? .ok : $0.removeFirst() }
            self.inHand.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
            defer { self.inHand.withLock { $0.now -= 1 } }
            if self.answerDelay > .zero { try await Task.sleep(for: self.answerDelay) }
            return Response(status: status)
        }
        return try await serving(router) { port in try await body("http://127.0.0.1:\(port)/postback") }
    }

    /// Waits until `count` requests have arrived or `timeout` passes.
    func waitFor(_ count: Int, timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + timeout
        while self.requests.count < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
