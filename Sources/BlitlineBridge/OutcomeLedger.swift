import AMQP
import DequeModule
import Foundation
import Synchronization

/// Which requests have an outcome, learnt by reading every event back from the outcomes stream.
///
/// Every instance reads the same stream, starting `JOB_TIMEOUT` (plus a margin) in the past, so
/// each knows about every outcome a deadline could still concern, whichever instance published it,
/// across restarts, with no state outside RabbitMQ. Entries older than that window are forgotten.
final class OutcomeLedger: Sendable {
    static let marker = "marker"

    private struct State {
        var outcomes: [String: String] = [:]
        var order: Deque<(at: ContinuousClock.Instant, requestID: String)> = []
        var markerWaiters: [String: AsyncStream<Void>.Continuation] = [:]
    }

    private let state = Mutex(State())
    let window: Duration

    init(window: Duration) { self.window = window }

    /// The outcome recorded for a request: `completed`, `failed`, `timeout`, `late`, or `nil`.
    func outcome(for requestID: String) -> String? {
        state.withLock { $0.outcomes[requestID] }
    }

    /// Whether the request's `timeout` event went out: any result from now on is late.
    func hasTimedOut(_ requestID: String) -> Bool {
        let outcome = outcome(for: requestID)
        return outcome == "timeout" || outcome == "late"
    }

    func record(_ outcome: String, for requestID: String) {
        let now = ContinuousClock.now
        state.withLock { state in
            // `timeout` and `late` are the later word on a request; a late result must not hide a timeout.
            if let existing = state.outcomes[requestID], existing == "timeout" || existing == "late" {
                if outcome != "late" { return }
            }
            if state.outcomes.updateValue(outcome, forKey: requestID) == nil {
                state.order.append((now, requestID))
            }
            while let oldest = state.order.first, now - oldest.at > window {
                state.order.removeFirst()
                state.outcomes.removeValue(forKey: oldest.requestID)
            }
        }
    }

    /// Where a reader starts in the stream: the window before now.
    var startOffset: AMQPFieldValue {
        let seconds = Date().timeIntervalSince1970 - Double(window.components.seconds)
        return .timestamp(UInt64(max(seconds, 0)))
    }

    /// Reads the stream until the consumer ends.
    func read(_ consumer: AMQPConsumer) async throws {
        var unacknowledged = 0
        for try await delivery in consumer {
            let headers = delivery.properties.headers
            let outcome = headers?[BridgeHeader.outcome]?.stringValue
            if outcome == Self.marker {
                if let id = delivery.properties.messageID {
                    state.withLock { $0.markerWaiters.removeValue(forKey: id) }?.finish()
                }
            } else if let outcome, let requestID = headers?[BridgeHeader.requestID]?.stringValue {
                record(outcome, for: requestID)
            }
            unacknowledged += 1
            if unacknowledged >= 100 {
                delivery.ack(multiple: true)
                unacknowledged = 0
            }
        }
    }

    /// Returns `true` once this instance has read every event published before the call, by
    /// putting a marker in the stream and waiting to read it back; `false` when the marker did not
    /// come back within `timeout` (the reader lags behind the stream).
    func sync(using publisher: EventPublisher, timeout: Duration = .seconds(10)) async throws -> Bool {
        let id = "marker/" + UUID().uuidString
        let (seen, continuation) = AsyncStream<Void>.makeStream()
        state.withLock { $0.markerWaiters[id] = continuation }
        defer { state.withLock { $0.markerWaiters.removeValue(forKey: id) }?.finish() }
        try await publisher.publishMarker(id)
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in seen {}
                return true
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            let markerSeen = try await group.next() ?? false
            group.cancelAll()
            return markerSeen
        }
    }
}
