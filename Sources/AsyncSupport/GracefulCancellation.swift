import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

extension Service {
    /// Runs the service so that cancellation reaches it first as a graceful shutdown and only
    /// `grace` after `listening` has closed as cancellation of what it still has in hand.
    ///
    /// For HTTP servers: cancelled outright, Hummingbird's accept loop drops the connections
    /// SwiftNIO had accepted but not yet handed to it, and SwiftNIO traps on such a drop
    /// (swift-nio #2637), taking the process down. Shut down gracefully, the server stops
    /// accepting and takes what it had accepted. Its graceful shutdown runs in a task of its own:
    /// on a busy cooperative pool that task started more than a second late, and a grace counted
    /// from the cancellation cut the accept loop with connections still queued (seen twice in a
    /// loaded test run). Counted from the listening socket's close, the accept loop, whose
    /// connections were queued before it, has taken them before the grace ends.
    public func runTakingCancellationAsGracefulShutdown(
        grace: Duration = .seconds(1), listening: ListeningChannel, logger: Logger
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
                await listening.closed()
                // Whoever cancelled wants the service gone, not drained: what it still has in
                // hand `grace` later is cut.
                try? await Task.sleep(for: grace)
                serving.cancel()
            }
        }
    }
}

/// A server's listening channel, handed over once the server runs (Hummingbird's
/// `onServerRunning`).
public final class ListeningChannel: Sendable {
    private let channel = Mutex<(any Channel)?>(nil)

    public init() {}

    public func set(_ channel: any Channel) {
        self.channel.withLock { $0 = channel }
    }

    /// Returns once the channel is closed and accepts no more connections; at once if the
    /// server never ran.
    func closed() async {
        guard let channel = channel.withLock({ $0 }) else { return }
        try? await channel.closeFuture.get()
    }
}
