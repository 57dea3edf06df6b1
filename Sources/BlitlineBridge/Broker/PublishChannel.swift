import AMQP
import Synchronization

/// The confirm-mode channel the bridge publishes on, opened again when the broker closes it.
///
/// The broker closes a channel over one message (a property it refuses, an exchange that is gone):
/// that concerns the message, not the connection. Every publish caught by the close tries again on
/// the new channel; one that keeps closing channels fails with `channelClosed` for its caller to
/// settle, and the others carry on.
final class PublishChannel: Sendable {
    /// How often a publish caught by a channel close is tried again on a new channel.
    static let retriesAfterClose = 3

    private struct State {
        var channel: AMQPChannel
        /// Counts the channels opened: a publish that failed on an older one needs no new one.
        var generation = 0
        /// Callers waiting for the channel being opened now; `nil` when none is being opened.
        var reopening: [CheckedContinuation<Void, any Error>]?
    }

    let connection: AMQPConnection
    private let state: Mutex<State>

    private init(connection: AMQPConnection, channel: AMQPChannel) {
        self.connection = connection
        self.state = Mutex(State(channel: channel))
    }

    /// Opens a confirm-mode channel on `connection`.
    static func open(on connection: AMQPConnection) async throws -> PublishChannel {
        PublishChannel(connection: connection, channel: try await openConfirming(connection))
    }

    private static func openConfirming(_ connection: AMQPConnection) async throws -> AMQPChannel {
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        return channel
    }

    /// Publishes and waits for the broker's confirm (see `AMQPChannel.publish`).
    func publish(
        _ body: [UInt8], exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties
    ) async throws {
        var retries = 0
        while true {
            let (channel, generation) = state.withLock { ($0.channel, $0.generation) }
            do {
                return try await channel.publish(
                    body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
            } catch let error as AMQPError
                where error.code == .channelClosed && retries < Self.retriesAfterClose && connection.closeReason == nil
            {
                retries += 1
                try await reopen(after: generation)
            }
        }
    }

    /// Opens a new channel unless one newer than `generation` exists; one caller opens it, the
    /// others wait for it.
    private func reopen(after generation: Int) async throws {
        let opens = state.withLock { state -> Bool? in
            guard state.generation == generation else { return nil }
            if state.reopening != nil { return false }
            state.reopening = []
            return true
        }
        switch opens {
        case nil:
            return
        case false?:
            try await withCheckedThrowingContinuation { continuation in
                let waiting = state.withLock { state -> Bool in
                    guard state.reopening != nil else { return false }
                    state.reopening!.append(continuation)
                    return true
                }
                if !waiting { continuation.resume() }
            }
        case true?:
            let result: Result<AMQPChannel, any Error>
            do { result = .success(try await Self.openConfirming(connection)) } catch { result = .failure(error) }
            let waiters = state.withLock { state in
                if case .success(let channel) = result {
                    state.channel = channel
                    state.generation += 1
                }
                defer { state.reopening = nil }
                return state.reopening ?? []
            }
            for waiter in waiters { waiter.resume(with: result.map { _ in () }) }
            _ = try result.get()
        }
    }
}
