import AMQP
import ServiceLifecycle

extension AMQPChannel {
    /// Consumes `queue`, handling deliveries concurrently (the prefetch bounds how many), until the
    /// consumer ends. On graceful shutdown the consumer is cancelled first, so no new delivery
    /// arrives while those in hand finish. An error from `handle` ends it all and is rethrown.
    func consume(
        queue: String, prefetch: UInt16, arguments: AMQPTable = [:], maxBodyBytes: Int? = nil,
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
