import AMQP
import Blitline
import Foundation
import Synchronization
import Testing
import TestSupport

/// The bridge on a three-node RabbitMQ cluster with quorum queues (README, "Running on a
/// cluster"), under a steady load with some postbacks that never come: losing a node loses no
/// request and no outcome. deploy/test.sh starts the cluster once for this suite
/// (`deploy/rabbitmq-cluster.sh`) and hands it over in `AMQP_TEST_CLUSTER_URLS` and
/// `AMQP_TEST_CLUSTER`.
@Suite(.serialized, .enabled(if: TestEnvironment.clusterURLs != nil, "needs AMQP_TEST_CLUSTER_URLS (deploy/test.sh)"))
struct BridgeClusterFaultTests {
    static let requestCount = 1500

    enum Victim {
        /// The node that leads the jobs queue.
        case jobsQueueLeader
        /// The node the bridge is connected to.
        case bridgesNode
    }

    @Test func losingTheNodeThatLeadsTheJobsQueueLosesNothing() async throws {
        try await loseANode(.jobsQueueLeader, label: "cluster-leader")
    }

    @Test func losingTheNodeTheBridgeIsConnectedToLosesNothing() async throws {
        try await loseANode(.bridgesNode, label: "cluster-connected")
    }

    func loseANode(_ victim: Victim, label: String) async throws {
        let urls = try #require(TestEnvironment.clusterURLs)
        // Whatever an earlier test left behind (a node it stopped before failing), all three nodes
        // are up before this one starts.
        try await TestEnvironment.controlCluster("ensure-up")
        try await TestEnvironment.$brokerOverride.withValue(urls) {
            // Postback retries on Blitline's own schedule (1 s, 3 s, 15 s) outlast the failover.
            try await BridgeHarness.run(label, retrySpeedFactor: 1) { h in
                var settings = try h.settings()
                settings.jobTimeout = "20s"
                let bridge = try await h.startBridge(settings)
                // One postback in fifty never comes: those jobs must end in `timeout`.
                try await h.simulator.control(["drop_postback_fraction": 0.02])
                let requests = (0..<Self.requestCount).map { TestRequest.thumbnails("\(label)-\($0)", index: $0 % 20) }

                // A steady load: 100 requests every 100 ms, the node lost a third of the way in.
                let publishing = Task { try await publishSteadily(requests, h) }
                #expect(await h.events.waitForCount(Self.requestCount / 3, timeout: .seconds(60)), "\(h.diagnostics())")
                let node = try await victimNode(victim, h, bridge)
                print("\(label): stopping node \(node); the test's queues (name, type, leader, members):\n\(await Self.queues(label))")
                let stopped = ContinuousClock.now
                try await TestEnvironment.controlCluster("stop-node", "\(node)")
                let readyAgain = await eventually(timeout: .seconds(60)) {
                    (try? await bridge.get("/readyz").status) == 200 && ContinuousClock.now - stopped > .seconds(2)
                }
                let failover = ContinuousClock.now - stopped
                print("\(label): node \(node) stopped; the bridge was ready again after \(failover)")
                #expect(readyAgain && failover < .seconds(32), "ready again after \(failover)\n\(h.diagnostics())")
                try await publishing.value

                let ids = requests.map(\.id)
                let delivered = await h.events.waitForEvents(for: ids, timeout: .seconds(120))
                let queuesNow = delivered ? "" : await Self.queues(label)
                #expect(delivered, "no event for \(h.events.missing(ids).prefix(20))\n\(h.diagnostics())\nqueues now:\n\(queuesNow)")
                // Every request settled (its events out), then a sentinel through the same bridge
                // (Blitline's faults off, so that its postback comes): events under another id
                // would be in by now.
                try await h.simulator.control(["drop_postback_fraction": 0])
                #expect(await h.waitUntilSettled(timeout: .seconds(60)), "requests still held\n\(h.diagnostics())")
                try await h.barrier()
                let timedOut = try expectOneOutcomeEach(requests, h)
                let stats = try await h.simulator.stats()
                print("\(label): \(timedOut) timeouts, \(stats["postbacks_dropped"]) postbacks dropped, "
                    + "\(stats["jobs_accepted"]) jobs accepted for \(requests.count) requests")
                #expect(timedOut >= 1, "no dropped postback was exercised")
                #expect(timedOut <= stats["postbacks_dropped"])
                // Requests in hand when the node went may be submitted again; nothing beyond.
                #expect(stats["jobs_accepted"] <= requests.count + 2 * 64)

                // The node comes back: nothing changes.
                let before = h.events.events.count
                try await TestEnvironment.controlCluster("start-node", "\(node)")
                try await TestEnvironment.controlCluster("ensure-up")
                try await h.barrier()
                #expect(bridge.isRunning)
                #expect((try? await bridge.get("/readyz").status) == 200)
                _ = try expectOneOutcomeEach(requests, h)
                #expect(h.events.events.count - before <= 64, "only repeats of events in flight")
            }
        }
    }

    /// Publishes `requests` 100 every 100 ms; a publish the lost node took down is published again.
    func publishSteadily(_ requests: [TestRequest], _ h: BridgeHarness) async throws {
        for chunk in stride(from: 0, to: requests.count, by: 100) {
            let started = ContinuousClock.now
            for request in requests[chunk..<min(chunk + 100, requests.count)] {
                try await retrying { try await h.publish(request) }
            }
            try await Task.sleep(until: started + .milliseconds(100))
        }
    }

    /// Tries `body` for up to a minute: the producer's side of a failover (its node gone, the
    /// queue's leader elected again) is not what these tests measure.
    func retrying(_ body: () async throws -> Void) async throws {
        let started = ContinuousClock.now
        for attempt in 1... {
            do {
                try await body()
                if attempt > 1 { print("the test's publisher was refused \(attempt - 1) times over \(ContinuousClock.now - started)") }
                return
            } catch where attempt < 120 {
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Every request has exactly one event id: completed, or failed by its timeout. Returns how
    /// many timed out.
    func expectOneOutcomeEach(_ requests: [TestRequest], _ h: BridgeHarness) throws -> Int {
        let ids = h.events.idsByRequest
        var timedOut = 0
        for request in requests {
            let mine = ids[request.id] ?? []
            #expect(mine.count == 1, "\(request.id): \(mine)")
            if mine == ["\(request.id)/failed"] {
                let reasons = Set(h.events.events(for: request.id).map(\.reason))
                #expect(reasons == ["timeout"], "\(request.id): \(reasons)")
                timedOut += 1
            } else {
                #expect(mine == ["\(request.id)/completed"], "\(request.id): \(mine)")
            }
        }
        return timedOut
    }

    /// The queues of the test labelled `label` with their type, leader and members, as the
    /// cluster reports them: when events stop, which queue lost its quorum.
    static func queues(_ label: String) async -> String {
        let rows = (try? await TestEnvironment.controlCluster(
            "ctl", "-q", "list_queues", "name", "type", "leader", "members", "--no-table-headers")) ?? "(no node answered)"
        return rows.split(separator: "\n").filter { $0.contains(label) }.joined(separator: "\n")
    }

    /// The node to stop, from the cluster's view of the jobs queue or from the bridge's log.
    func victimNode(_ victim: Victim, _ h: BridgeHarness, _ bridge: BridgeProcess) async throws -> Int {
        switch victim {
        case .jobsQueueLeader:
            let leader = try await TestEnvironment.controlCluster("leader", h.jobsQueue).trimmingCharacters(in: .whitespacesAndNewlines)
            return try #require(Int(leader), "no leader for \(h.jobsQueue): \"\(leader)\"")
        case .bridgesNode:
            let line = try #require(bridge.logLines.last { $0.contains("connected to the broker") })
            let ports = try TestEnvironment.clusterPorts()
            let node = ports.firstIndex { line.contains("127.0.0.1:\($0)/") }
            return try #require(node.map { $0 + 1 }, "which node: \(line)")
        }
    }
}
