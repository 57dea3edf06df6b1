import AMQP
import Blitline
import Synchronization
import TestSupport

/// One message read back from a queue the bridge publishes events to.
struct ReceivedEvent: Sendable {
    let body: [UInt8]
    /// The body parsed, or `nil` when it is not JSON.
    let json: JSONValue?
    let properties: AMQPProperties
    let exchange: String
    let routingKey: String

    var id: String? { json?["id"]?.stringValue }
    /// The request id (CloudEvents `subject`).
    var subject: String? { json?["subject"]?.stringValue }
    var data: JSONValue? { json?["data"] }
    var status: String? { data?["status"]?.stringValue }
    var reason: String? { data?["reason"]?.stringValue }
    var errors: [String] { data?["errors"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
    /// Whether this is the event of a barrier's sentinel request (`BridgeHarness.barrier`).
    var isSentinel: Bool { subject?.hasPrefix(TestRequest.sentinelPrefix) == true }
}

/// Reads every message of a queue in the background, acknowledging each, and reconnects after a
/// loss of the broker (events published meanwhile wait in the durable queue).
final class EventCollector: Sendable {
    let queue: String
    private let received = Mutex<[ReceivedEvent]>([])
    private let connection = Mutex<AMQPConnection?>(nil)
    private let stopped = Mutex(false)
    private let reader = Mutex<Task<Void, Never>?>(nil)

    /// Creates a collector of `queue`, which must exist before ``start()``.
    init(queue: String) {
        self.queue = queue
    }

    func start() {
        let task = Task { [self] in await readUntilStopped() }
        reader.withLock { $0 = task }
    }

    /// Everything read so far, in arrival order, but the events of barrier sentinels: those belong
    /// to the harness, not to the test.
    var events: [ReceivedEvent] { received.withLock { $0 }.filter { !$0.isSentinel } }

    /// Whether the event of the sentinel request `sentinelID` was read.
    func hasSentinelEvent(_ sentinelID: String) -> Bool {
        received.withLock { $0.contains { $0.subject == sentinelID } }
    }

    /// The events whose subject is `requestID`.
    func events(for requestID: String) -> [ReceivedEvent] { events.filter { $0.subject == requestID } }

    /// The distinct event ids seen for each request id.
    var idsByRequest: [String: Set<String>] {
        events.reduce(into: [:]) { ids, event in
            ids[event.subject ?? "?", default: []].insert(event.id ?? "?")
        }
    }

    /// Waits until every one of `requestIDs` has at least one event whose id ends with one of
    /// `suffixes` (any event when `nil`); returns whether they all did in time.
    func waitForEvents(
        for requestIDs: some Collection<String>, endingWith suffixes: [String]? = nil, timeout: Duration
    ) async -> Bool {
        await eventually(timeout: timeout) { missing(requestIDs, endingWith: suffixes).isEmpty }
    }

    /// The request ids among `requestIDs` that have no matching event yet.
    func missing(_ requestIDs: some Collection<String>, endingWith suffixes: [String]? = nil) -> [String] {
        var seen = Set<String>()
        for event in events {
            guard let subject = event.subject, let id = event.id else { continue }
            if suffixes?.contains(where: { id.hasSuffix("/" + $0) }) ?? true { seen.insert(subject) }
        }
        return requestIDs.filter { !seen.contains($0) }
    }

    /// Waits until `count` events arrived; returns whether they did in time.
    func waitForCount(_ count: Int, timeout: Duration) async -> Bool {
        await eventually(timeout: timeout) { events.count >= count }
    }

    func stop() async {
        stopped.withLock { $0 = true }
        if let connection = connection.withLock({ $0 }) { await connection.close() }
        let task = reader.withLock { $0 }
        task?.cancel()
        await task?.value
    }

    private var isStopped: Bool { stopped.withLock { $0 } }

    private func readUntilStopped() async {
        while !isStopped {
            do {
                let connection = try await TestEnvironment.connect()
                self.connection.withLock { $0 = connection }
                if isStopped {
                    await connection.close()
                    return
                }
                let channel = try await connection.openChannel()
                for try await delivery in try await channel.consume(queue: queue, prefetch: 500) {
                    let event = ReceivedEvent(
                        body: delivery.body, json: try? JSONValue(parsing: delivery.body),
                        properties: delivery.properties, exchange: delivery.exchange, routingKey: delivery.routingKey)
                    received.withLock { $0.append(event) }
                    delivery.ack()
                }
            } catch {
                if let connection = connection.withLock({ $0 }) { await connection.close() }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}
