import AMQP
import Synchronization

/// The confirm-mode channel the bridge publishes on, opened again when the broker closes it.
///
/// The broker closes a channel over one message (a property it refuses, an exchange that is gone):
/// that concerns the message, not the connection. Every publish caught by the close tries again on
/// the new channel; one that keeps closing channels fails with `channelClosed` for its caller to
/// settle, and the others carry on.
///
/// A destination found gone (deleted while the bridge runs) is handled here, for every caller:
/// - A mandatory publish returned because its queue is gone is tried again once `restore` has
///   declared the queue again (``MissingQueues``).
/// - A publish to an exchange that is gone closes the channel, and every publish caught by the
///   close is published again. So once one finds its exchange gone, publishes to it are refused
///   here without being published, and the exchange is looked for at most once per
///   ``exchangeRecheck``, with a passive declare on a channel of its own. It is not declared again:
///   whoever owns its bindings must restore them with it.
final class PublishChannel: Sendable {
    /// How often a publish caught by a channel close is tried again on a new channel.
    static let retriesAfterClose = 3

    private struct State {
        var channel: AMQPChannel
        /// Counts the channels opened: a publish that failed on an older one needs no new one.
        var generation = 0
        /// Callers waiting for the channel being opened now; `nil` when none is being opened.
        var reopening: [CheckedContinuation<Void, any Error>]?
        /// An exchange a publish found gone, and when it was last looked for.
        var goneExchange: (name: String, lookedAt: ContinuousClock.Instant)?
    }

    /// How often an exchange found gone is looked for again.
    static let exchangeRecheck: Duration = .seconds(1)

    let connection: AMQPConnection
    private let state: Mutex<State>
    /// Declares a queue that a publish found gone again; returns whether it exists now.
    private let restore: @Sendable (_ queue: String) async -> Bool

    private init(connection: AMQPConnection, channel: AMQPChannel, restore: @escaping @Sendable (String) async -> Bool) {
        self.connection = connection
        self.state = Mutex(State(channel: channel))
        self.restore = restore
    }

    /// Opens a confirm-mode channel on `connection`; `restore` is asked to declare again a queue
    /// that a mandatory publish found gone.
    static func open(
        on connection: AMQPConnection, restoring restore: @escaping @Sendable (_ queue: String) async -> Bool = { _ in false }
    ) async throws -> PublishChannel {
        PublishChannel(connection: connection, channel: try await openConfirming(connection), restore: restore)
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
        var restored = false
        while true {
            let (channel, generation, gone) = state.withLock { ($0.channel, $0.generation, $0.goneExchange?.name == exchange) }
            if gone, await !exchangeIsBack(exchange) {
                throw AMQPError(
                    .channelClosed, replyCode: AMQPError.ReplyCode.notFound,
                    "the exchange \(exchange) is gone (deleted); publishing to it waits until it is declared again")
            }
            do {
                return try await channel.publish(
                    body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
            } catch let error as AMQPError
                where error.code == .channelClosed && retries < Self.retriesAfterClose && connection.closeReason == nil
                    && !Self.closedForMissing(exchange, error)
            {
                retries += 1
                try await reopen(after: generation)
            } catch let error as AMQPError where Self.closedForMissing(exchange, error) {
                state.withLock { if $0.goneExchange == nil { $0.goneExchange = (exchange, .now) } }
                throw error
            } catch let error as AMQPError
                where error.code == .returned && error.replyCode == AMQPError.ReplyCode.noRoute && exchange.isEmpty && !restored
            {
                // Returned by the default exchange: no queue of that name. Routed nowhere, so
                // publishing it again once the queue is back publishes it once.
                restored = true
                guard await restore(routingKey) else { throw error }
            }
        }
    }

    /// Whether the broker closed the channel because `exchange` does not exist (RabbitMQ's
    /// "NOT_FOUND - no exchange '…' in vhost '…'"): this publish's own fault, which publishing it
    /// again would only repeat, closing the channel each time.
    private static func closedForMissing(_ exchange: String, _ error: AMQPError) -> Bool {
        !exchange.isEmpty && error.code == .channelClosed && error.replyCode == AMQPError.ReplyCode.notFound
            && error.replyText.contains("no exchange '\(exchange)'")
    }

    /// Whether `exchange`, found gone, exists again. The first caller after each
    /// ``exchangeRecheck`` looks for it with a passive declare on a channel of its own (which the
    /// broker closes while it is missing); the others are answered from the last look.
    private func exchangeIsBack(_ exchange: String) async -> Bool {
        enum Look { case back, goneStill, look }
        let look = state.withLock { state -> Look in
            guard let gone = state.goneExchange, gone.name == exchange else { return .back }
            guard gone.lookedAt.duration(to: .now) >= Self.exchangeRecheck else { return .goneStill }
            state.goneExchange = (exchange, .now)
            return .look
        }
        guard look == .look else { return look == .back }
        do {
            let probe = try await connection.openChannel()
            // A passive declare ignores the type.
            try await probe.declareExchange(exchange, type: "topic", passive: true)
            try? await probe.close()
        } catch {
            return false
        }
        state.withLock { if $0.goneExchange?.name == exchange { $0.goneExchange = nil } }
        return true
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
