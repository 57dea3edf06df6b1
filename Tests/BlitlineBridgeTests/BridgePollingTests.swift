import Foundation
import Testing

extension BridgeProcessTests {
    /// Polling mode (no `POSTBACK_BASE_URL`, contract section 7): results long-polled within
    /// `POLL_RATE`.
    @Suite struct BridgePollingTests {
        @Test func pollingModeCompletesEveryRequestWithinThePollRate() async throws {
            try await BridgeHarness.run("polling") { h in
                var settings = try h.settings()
                settings.postbackPort = nil
                settings.extra["POLL_RATE"] = "5"
                try await h.startBridge(settings)
                let requests = (0..<20).map { TestRequest.thumbnails("polled-\($0)", index: $0) }
                let start = Date()
                let outcomes = try await h.outcomes(of: requests, timeout: .seconds(60), settle: .zero)
                let elapsed = Date().timeIntervalSince(start)
                let stats = try await h.simulator.stats()
                outcomes.expectEachCompleted(requests, via: "poll")
                #expect(stats["polls"] >= requests.count)
                #expect(
                    Double(stats["polls"]) <= 5 * elapsed + 2,
                    "\(stats["polls"]) polls in \(elapsed) s is faster than POLL_RATE=5")
                #expect(
                    stats["polls_rate_limited"] == 0,
                    "Blitline answered 429 to \(stats["polls_rate_limited"]) of \(stats["polls"]) polls")
                #expect(stats["postbacks_sent"] == 0)
            }
        }
    }
}
