import Logging
import ServiceLifecycle

extension Service {
    /// Runs the service so that cancellation reaches it first as a graceful shutdown and only
    /// `grace` later as cancellation of what it still has in hand.
    ///
    /// For HTTP servers: cancelled outright, Hummingbird's accept loop drops the connections
    /// SwiftNIO had accepted but not yet handed to it, and SwiftNIO traps on such a drop
    /// (swift-nio #2637), taking the process down. Shut down gracefully, the server stops
    /// accepting and takes what it had accepted.
    public func runTakingCancellationAsGracefulShutdown(
        grace: Duration = .seconds(1), logger: Logger
    ) async throws {
        let group = ServiceGroup(configuration: .init(services: [self], logger: logger))
        // A task of its own, so that cancellation does not reach the group at once; it inherits
        // the task-local values, among them the graceful shutdown of an enclosing service group.
        let serving = Task { try await group.run() }
        try await withTaskCancellationHandler {
            try await serving.value
        } onCancel: {
            Task {
                await group.triggerGracefulShutdown()
                // Whoever cancelled wants the service gone, not drained: what it still has in
                // hand `grace` later is cut.
                try? await Task.sleep(for: grace)
                serving.cancel()
            }
        }
    }
}
