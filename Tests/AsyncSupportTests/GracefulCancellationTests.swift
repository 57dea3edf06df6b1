import Glibc
import Hummingbird
import Testing
import TestSupport

@Suite struct GracefulCancellationTests {
    /// A server run so that cancellation reaches it as a graceful shutdown first stops without
    /// trapping when it is cancelled with connections accepted but not yet taken (swift-nio #2637).
    @Test func aServerCancelledWhileConnectionsWaitToBeAcceptedStops() async throws {
        for _ in 0..<5 {
            let sockets = try await serving(Router()) { port in
                (0..<64).compactMap { _ in Ports.connectedSocket(port) }
            }
            #expect(sockets.count == 64)
            sockets.forEach { close($0) }
        }
    }
}
