import AMQP
import ServiceLifecycle

extension AMQPChannel {
    /// Consumes `queue` and handles its deliveries concurrently (the prefetch bounds how many); returns
    /// only at graceful shutdown, when the consumer is cancelled first, so that no new delivery
    /// arrives while those in hand finish. An error from `handle` ends it all and is rethrown.
    /// (The AMQP module's `consume` returns the consumer at once; this one runs it.)
    func handleDeliveries(
        from queue: String, prefetch: UInt16, arguments: AMQPTable = [:], maxBodyBytes: Int? = nil,
        handle: @escaping @Sendable (AMQPDelivery) async throws -> Void
    ) async throws {
        let consumer = try await consume(queue: queue, prefetch: prefetch, arguments: arguments, maxBodyBytes: maxBodyBytes)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do { try await gracefulShutdown() } catch { return }
                try? await self.cancel(consumer)
            }
            for try await delivery in consumer {
                group.addTask { try await handle(delivery) }
            }
            // The consumer ends normally only when cancelled, which only the shutdown does.
            guard Task.isShuttingDownGracefully else {
                throw AMQPError(.consumerCancelled, "the consumer of \(queue) ended unexpectedly")
            }
        }
    }
}
