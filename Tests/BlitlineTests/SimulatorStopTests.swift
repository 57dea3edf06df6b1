import Glibc
import Testing
import TestSupport

@Suite struct SimulatorStopTests {
    /// Cancelled while clients are connecting (as the tests stop it), the simulator returns;
    /// dropping the connections it had accepted but not yet taken would trap (swift-nio #2637) and
    /// take the process down.
    @Test func cancelledWhileConnectionsWaitToBeAcceptedTheSimulatorStops() async throws {
        for _ in 0..<5 {
            var sockets: [Int32] = []
            try await withSimulator { _, port in
                sockets = (0..<64).compactMap { _ in Ports.connectedSocket(port) }
            }
            #expect(sockets.count == 64)
            sockets.forEach { close($0) }
        }
    }
}
