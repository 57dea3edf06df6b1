import AsyncHTTPClient
import Blitline
import Foundation
import NIOCore
import Synchronization
import Testing
import TestSupport

@testable import BlitlineBridge

/// Deadlines at scale (README, "Delivery guarantees"): a result in time always wins, a late one is `late`,
/// a restart after a long stop or onto a large backlog times out nothing that had a result, and a
/// short deadline never waits behind a long one.
@Suite(.serialized) struct BridgeDeadlineFaultTests {
    /// Postbacks delivered at their job's deadline ± 50 ms, through the URLs the bridge submitted:
    /// one that was answered before the deadline never gets a timeout; one sent after it is `late`
    /// and its job gets its timeout; no job gets both a result and a timeout.
    @Test func resultsAtTheDeadlineRaceTheirTimeouts() async throws {
        try await BridgeHarness.run("deadline-race") { h in
            var settings = try h.settings()
            settings.jobTimeout = "4s"
            settings.timeoutGrace = "2s"
            let bridge = try await h.startBridge(settings)
            let requests = (0..<240).map { TestRequest.thumbnails("race-\($0)", index: $0 % 20) }
            let dropped = try await h.publishHoldingPostbacks(requests)

            // Each postback at its deadline (from the URL's signed token) minus or plus 50 ms.
            let keys = PostbackToken.Keys(secrets: [h.secret], jobTimeout: .seconds(4))
            let deliveries = try await withThrowingTaskGroup(of: Delivery.self) { group in
                for (index, postback) in dropped.enumerated() {
                    let tokenText = try #require(postback.url.split(separator: "/").last)
                    let token = try PostbackToken(verifying: tokenText, keys: keys)
                    let deadline = try #require(token.deadline)
                    let offset: Int64 = index % 2 == 0 ? -50 : 50
                    group.addTask {
                        let due = Date(timeIntervalSince1970: Double(deadline + offset) / 1000)
                        try await Task.sleep(for: .milliseconds(max(0, Int64(due.timeIntervalSinceNow * 1000))))
                        let sent = WallClock.system.now()
                        let path = URL(string: postback.url)?.path ?? postback.url
                        let answer = try await bridge.post(path, body: postback.body)
                        return Delivery(
                            requestID: token.context.requestID, deadline: deadline, sent: sent,
                            answered: WallClock.system.now(), status: answer.status)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(deliveries.allSatisfy { $0.status == 200 }, "\(deliveries.filter { $0.status != 200 }.prefix(5))")

            // Every job ends: in time with its result, or with a timeout (and a late result).
            let ids = requests.map(\.id)
            #expect(await h.events.waitForEvents(for: ids, timeout: .seconds(30)), "\(h.diagnostics())")
            // Every postback was answered above; once every deadline is handled too, all the events
            // they make are out, and the barrier's sentinel (posted back: no more drops) comes after them.
            #expect(
                await h.waitUntilSettled(deadlines: true, timeout: .seconds(30)), "deadlines still held\n\(h.diagnostics())")
            try await h.simulator.control(["drop_postback_fraction": 0])
            try await h.barrier()
            let byRequest = h.events.idsByRequest
            var inTime = 0
            var late = 0
            for delivery in deliveries {
                let mine = byRequest[delivery.requestID] ?? []
                let completed: Set = ["\(delivery.requestID)/completed"]
                let timedOut: Set = ["\(delivery.requestID)/failed", "\(delivery.requestID)/late"]
                #expect(mine == completed || mine == timedOut, "\(delivery): \(mine)")
                if delivery.answered < delivery.deadline {
                    inTime += 1
                    #expect(mine == completed, "answered \(delivery.deadline - delivery.answered) ms before its deadline: \(mine)")
                } else if delivery.sent > delivery.deadline {
                    late += 1
                    #expect(mine == timedOut, "sent \(delivery.sent - delivery.deadline) ms after its deadline: \(mine)")
                }
            }
            print("deadline-race: \(inTime) postbacks answered before their deadline, \(late) sent after it")
            // On a loaded machine some postbacks sent 50 ms early are answered after the deadline:
            // those may end either way, and enough of both kinds remain.
            #expect(inTime >= requests.count / 8 && late >= requests.count / 4, "the race was not exercised")
            for request in requests where byRequest[request.id]?.contains("\(request.id)/failed") == true {
                #expect(Set(h.events.events(for: request.id).compactMap(\.reason)) == ["timeout"])
            }
        }
    }

    struct Delivery: Sendable, CustomStringConvertible {
        var requestID: String
        /// Milliseconds since the Unix epoch.
        var deadline: Int64
        var sent: Int64
        var answered: Int64
        var status: Int
        var description: String { "\(requestID) sent at deadline\(sent - deadline >= 0 ? "+" : "")\(sent - deadline) ms → \(status)" }
    }

    /// Every instance stopped for longer than the outcome ledger's window, then one started: it
    /// reads the stream back to the jobs' submission and times out only the job with no result.
    @Test func aLongStopTimesOutNothingThatCompletedInTime() async throws {
        try await BridgeHarness.run("deadline-long-stop") { h in
            var settings = try h.settings()
            settings.jobTimeout = "3s"
            // The ledger's window is JOB_TIMEOUT + TIMEOUT_GRACE + min(JOB_TIMEOUT, 2 min): 7 s.
            let bridge = try await h.startBridge(settings)
            let completing = (0..<20).map { TestRequest.thumbnails("in-time-\($0)", index: $0) }
            try await h.publish(completing)
            #expect(await h.events.waitForEvents(for: completing.map(\.id), timeout: .seconds(10)), "\(h.diagnostics())")
            try await h.simulator.control(["drop_postbacks": 3])
            let dropped = (0..<3).map { TestRequest.thumbnails("never-\($0)", index: $0) }
            try await h.publish(dropped)
            #expect(await eventually(timeout: .seconds(10)) { (try? await h.simulator.stats()["postbacks_dropped"]) == 3 })

            bridge.signal(SIGTERM)
            #expect(await bridge.waitForExit(timeout: .seconds(15)) != nil)
            // Longer than the window, and past every deadline: all of them wait in the timeouts queue.
            try await Task.sleep(for: .seconds(12))
            let restarted = try await h.restart(bridge)
            #expect(
                await h.events.waitForEvents(for: dropped.map(\.id), endingWith: ["failed"], timeout: .seconds(60)),
                "\(h.diagnostics())")
            // A wrong timeout would come with a deadline still held: once none is, their events are out.
            #expect(
                await h.waitUntilSettled(deadlines: true, timeout: .seconds(30)), "deadlines still held\n\(h.diagnostics())")
            try await h.barrier()
            for request in completing {
                #expect(h.events.idsByRequest[request.id] == ["\(request.id)/completed"], "\(request.id)")
            }
            for request in dropped {
                #expect(h.events.idsByRequest[request.id] == ["\(request.id)/failed"], "\(request.id)")
            }
            #expect(restarted.logLines.contains { $0.contains("reading the outcomes stream back") })
            // What it read back shows in its metrics: at least the 20 completed requests.
            var known: (fingerprints: Double, bytes: Double)?
            #expect(
                await eventually(timeout: .seconds(15)) {
                    let text = (try? await restarted.get("/metrics").text) ?? ""
                    func value(_ name: String) -> Double? {
                        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
                    }
                    known = value("blitline_bridge_outcome_ledger_fingerprints").flatMap { count in
                        value("blitline_bridge_outcome_ledger_bytes").map { (count, $0) }
                    }
                    return (known?.fingerprints ?? 0) >= 20
                }, "\(String(describing: known))")
            #expect(restarted.logLines.filter { $0.contains("connected to the broker") }.count == 1, "the session was torn down")
        }
    }

    /// The outcomes stream's reader comes back with the broker: a postback that never comes after a
    /// broker restart still ends in its timeout (the cluster tests found the reader reconnecting in
    /// a loop, and no timeout decided, after its first reconnection).
    @Test func timeoutsAreStillDecidedAfterTheBrokerRestarts() async throws {
        try await BridgeHarness.run("deadline-broker-restart") { h in
            var settings = try h.settings()
            settings.jobTimeout = "3s"
            let bridge = try await h.startBridge(settings)
            let before = TestRequest.thumbnails("before-restart", index: 0)
            try await h.publish(before)
            #expect(await h.events.waitForEvents(for: [before.id], timeout: .seconds(10)), "\(h.diagnostics())")

            try await TestEnvironment.controlBroker("ctl", "stop_app")
            try await Task.sleep(for: .seconds(2))
            try await TestEnvironment.controlBroker("ctl", "start_app")
            #expect(
                await eventually(timeout: .seconds(40)) { (try? await bridge.get("/readyz").status) == 200 },
                "\(h.diagnostics())")

            try await h.simulator.control(["drop_postbacks": 2])
            let dropped = (0..<2).map { TestRequest.thumbnails("after-restart-\($0)", index: $0) }
            #expect(await eventually(timeout: .seconds(20)) { (try? await h.publish(dropped)) != nil })
            #expect(
                await h.events.waitForEvents(for: dropped.map(\.id), endingWith: ["failed"], timeout: .seconds(40)),
                "no timeout after the broker restarted\n\(h.diagnostics())")
            for request in dropped {
                #expect(Set(h.events.events(for: request.id).compactMap(\.reason)) == ["timeout"])
            }
        }
    }

    /// RabbitMQ 4.0 – 4.2 give every quorum queue a delivery limit of 20, and count a message handed
    /// back (`basic.nack` with requeue) as a delivery: the broker drops it past the limit. A deadline
    /// whose timeout the events exchange refuses (a full downstream queue) for longer than that
    /// still ends in its timeout once the exchange takes events again. The policy stands in for
    /// 4.x's default on this broker, with a limit of 2.
    @Test(.enabled(if: TestEnvironment.queueType == .quorum, "a delivery limit is a quorum queue's"))
    func aTimeoutRefusedPastTheBrokersDeliveryLimitIsStillDecided() async throws {
        try await BridgeHarness.run("deadline-delivery-limit") { h in
            var settings = try h.settings()
            settings.jobTimeout = "3s"
            let bridge = try await h.startBridge(settings)
            func policy(_ name: String, on queue: String, _ definition: String) async throws {
                _ = try await TestEnvironment.brokerCtl(
                    "set_policy", name + "-" + h.jobsQueue, "^" + NSRegularExpression.escapedPattern(for: queue) + "$",
                    definition, "--apply-to", "queues", "--priority", "10")
            }
            try await policy("limit", on: h.topology.timeoutsQueue, #"{"delivery-limit":2}"#)
            // A downstream queue that is full, then takes messages again once its policy is cleared.
            let downstream = h.jobsQueue + ".downstream"
            let broker = try await TestEnvironment.connect()
            let channel = try await broker.openChannel()
            try await channel.declareQueue(downstream)
            try await channel.bindQueue(downstream, exchange: h.eventsExchange, routingKey: "job.#")
            try await policy("full", on: downstream, #"{"max-length":0,"overflow":"reject-publish"}"#)
            try await h.simulator.control(["drop_postbacks": 1])
            let lost = TestRequest.thumbnails("refused-timeout", index: 0)
            try await h.publish(lost)
            // The deadline expires after 4 s; its timeout is refused and the deadline handed back
            // every 5 s, more often than the limit allows.
            try await Task.sleep(for: .seconds(25))
            let setbacks = try await bridge.metrics().value("blitline_bridge_request_setbacks_total")
            #expect(setbacks >= 3, "\(h.diagnostics())")
            _ = try await TestEnvironment.brokerCtl("clear_policy", "full-" + h.jobsQueue)
            #expect(
                await eventually(timeout: .seconds(30)) { (try? await h.depth(of: downstream)) == 1 },
                "the downstream queue never got the timeout\n\(h.diagnostics())")
            _ = try await TestEnvironment.brokerCtl("clear_policy", "limit-" + h.jobsQueue)
            _ = try await channel.deleteQueue(downstream)
            await broker.close()
            #expect(Set(h.events.events(for: lost.id).compactMap(\.reason)) == ["timeout"])
        }
    }

    /// A bridge with a long `JOB_TIMEOUT` leaves a deadline in the broker; the same bridge with a
    /// short one times its own jobs out on time, not behind the long deadline.
    @Test func aShortDeadlineDoesNotWaitBehindALongOne() async throws {
        try await BridgeHarness.run("deadline-change") { h in
            var settings = try h.settings()
            settings.jobTimeout = "10m"
            let long = try await h.startBridge(settings)
            try await h.simulator.control(["drop_postback_fraction": 1.0])
            let early = TestRequest.thumbnails("long-deadline", index: 0)
            try await h.publish(early)
            #expect(await eventually(timeout: .seconds(10)) { (try? await h.simulator.stats()["postbacks_dropped"]) == 1 })
            long.signal(SIGTERM)
            #expect(await long.waitForExit(timeout: .seconds(15)) != nil)

            settings.jobTimeout = "2s"
            _ = try await h.startBridge(settings, pinned: true)
            let later = TestRequest.thumbnails("short-deadline", index: 1)
            try await h.publish(later)
            #expect(
                await h.events.waitForEvents(for: [later.id], endingWith: ["failed"], timeout: .seconds(30)),
                "the short deadline waited behind the long one\n\(h.diagnostics())")
            #expect(h.events.events(for: early.id).isEmpty, "the ten-minute deadline fired early")
        }
    }
}
