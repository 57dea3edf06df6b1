import Foundation
import Testing
import TestSupport

@testable import BlitlineBridge

extension BridgeProcessTests {
    /// Polling mode (no `POSTBACK_BASE_URL`, README, "Polling at scale"): results long-polled within
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
                let outcomes = try await h.outcomes(of: requests, timeout: .seconds(60))
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

        /// The deadlines queue gone for a while (the bridge may not declare it again), so that the
        /// broker returns every deadline: each request is set back and comes back to be scheduled
        /// again, and still polls Blitline with one chain of polls, not one more with each try.
        @Test func aRequestSetBackWhileItsDeadlineIsRefusedPollsWithOneChain() async throws {
            try await BridgeBrokerUser.with { user in try await BridgeHarness.run("polling-setbacks") { simulator in
                simulator.processingDelay = .seconds(8)
            } _: { h in
                var settings = try h.settings()
                settings.postbackPort = nil
                settings.brokerURL = try user.url
                let bridge = try await h.startBridge(settings)
                try await user.forbidDeclaring([h.topology.deadlinesQueue])
                let broker = try await TestEnvironment.connect()
                _ = try await broker.openChannel().deleteQueue(h.topology.deadlinesQueue)
                let requests = (0..<4).map { TestRequest.thumbnails("polling-setback-\($0)", index: $0) }
                try await h.publish(requests)
                try await Task.sleep(for: .seconds(4))  // set back at once, and again 1 s later
                let setbacks = try await bridge.metrics().value("blitline_bridge_request_setbacks_total")
                #expect(setbacks >= Double(2 * requests.count), "\(h.diagnostics())")
                try await h.topology.declare(on: broker)
                await broker.close()
                #expect(
                    await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(60)), "\(h.diagnostics())")
                #expect(await h.waitUntilSettled(timeout: .seconds(30)), "requests still held\n\(h.diagnostics())")
                try await Task.sleep(for: .seconds(3))  // any other chain's poll is answered with the result too
                let stats = try await h.simulator.stats()
                #expect(stats["jobs_accepted"] == requests.count, "submitted again")
                #expect(stats["polls_answered"] == requests.count, "more than one chain of polls per job")
            } }
        }

        /// A downstream queue that refuses events for longer than Blitline keeps a polled result:
        /// each result is held by the bridge, published once the queue takes events again, and its
        /// job gets no `timeout`, though its deadline passes meanwhile.
        @Test func aPolledResultRefusedLongerThanBlitlineKeepsItIsHeldNotLost() async throws {
            try await BridgeHarness.run("polling-held") { simulator in
                simulator.resultRetention = .seconds(3)
            } _: { h in
                var settings = try h.settings()
                settings.postbackPort = nil
                settings.jobTimeout = "10s"
                let bridge = try await h.startBridge(settings)
                let requests = (0..<3).map { TestRequest.thumbnails("polling-held-\($0)", index: $0) }
                // Past the results' retention (3 s) and each deadline (10 s, grace 1 s).
                #expect(
                    try await h.publish(requests, whileEventsAreRefusedFor: .seconds(14)),
                    "no event taken by every queue for some of \(requests.map(\.id))\n\(h.diagnostics())")
                try await h.expectResultsHeld(requests, by: bridge)
                #expect(try await h.simulator.stats()["results_expired_unread"] == 0)
            }
        }

        /// SIGTERM while long polls wait on Blitline: the polls in hand are handed back at once, so
        /// the bridge exits 0 well within `SHUTDOWN_TIMEOUT`, and the next instance polls them.
        @Test func sigtermHandsThePollsInHandBackAtOnce() async throws {
            try await BridgeHarness.run("polling-sigterm") { simulator in
                simulator.processingDelay = .seconds(20)
            } _: { h in
                var settings = try h.settings()
                settings.postbackPort = nil
                settings.shutdownTimeout = "8s"
                let bridge = try await h.startBridge(settings)
                let requests = (0..<3).map { TestRequest.thumbnails("polling-sigterm-\($0)", index: $0) }
                try await h.publish(requests)
                #expect(
                    await eventually(timeout: .seconds(20)) { (try? await h.simulator.stats()["polls"]) ?? 0 >= 3 },
                    "no poll went out\n\(h.diagnostics())")
                let signalled = ContinuousClock.now
                bridge.signal(SIGTERM)
                let exitedAfter = await bridge.waitForExit(timeout: .seconds(15)).map { _ in ContinuousClock.now - signalled }
                #expect(
                    exitedAfter.map { $0 < .seconds(4) } == true,
                    "exit took \(String(describing: exitedAfter)) with SHUTDOWN_TIMEOUT=8s\n\(bridge.logTail())")
                #expect(bridge.exitStatus == 0, "exit status \(String(describing: bridge.exitStatus))")
                try await h.restart(bridge)
                #expect(
                    await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(40)),
                    "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
                for request in requests { #expect(h.events.events(for: request.id).map(\.status) == ["completed"]) }
            }
        }

        /// RabbitMQ 4.0 – 4.2 count a message handed back as a delivery and drop it past the quorum
        /// queue's delivery limit (20 by default). Polls handed back at each stop of a rolling
        /// restart go back as fresh copies, so a job polled across more stops than the limit still
        /// gets its result. The policy stands in for 4.x's default, with a limit of 1.
        @Test(.enabled(if: TestEnvironment.queueType == .quorum, "a delivery limit is a quorum queue's"))
        func pollsHandedBackAtEveryStopOutlastTheBrokersDeliveryLimit() async throws {
            try await BridgeHarness.run("polling-delivery-limit") { simulator in
                simulator.processingDelay = .seconds(30)
            } _: { h in
                var settings = try h.settings()
                settings.postbackPort = nil
                settings.shutdownTimeout = "8s"
                let policy = "limit-" + h.jobsQueue
                _ = try await TestEnvironment.brokerCtl(
                    "set_policy", policy, "^" + NSRegularExpression.escapedPattern(for: h.topology.pollsQueue) + "$",
                    #"{"delivery-limit":1}"#, "--apply-to", "queues", "--priority", "10")
                var bridge = try await h.startBridge(settings)
                let requests = (0..<2).map { TestRequest.thumbnails("polling-limit-\($0)", index: $0) }
                try await h.publish(requests)
                // Three stops while the jobs run, each with both polls in hand.
                for stop in 1...3 {
                    #expect(
                        await eventually(timeout: .seconds(20)) { (try? await h.simulator.stats()["polls"]) ?? 0 >= 2 * stop },
                        "stop \(stop): the polls were not taken again\n\(h.diagnostics())")
                    bridge.signal(SIGTERM)
                    #expect(await bridge.waitForExit(timeout: .seconds(15)) != nil)
                    bridge = try await h.restart(bridge)
                }
                #expect(
                    await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(40)),
                    "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
                _ = try await TestEnvironment.brokerCtl("clear_policy", policy)
                for request in requests { #expect(h.events.events(for: request.id).map(\.status) == ["completed"]) }
            }
        }

        /// The pause queue gone (the bridge may not declare it again), so that the broker returns
        /// every poll scheduled after a pending answer: the poll in hand goes back to the polls
        /// queue as a fresh copy after 5 s, not handed back itself, which RabbitMQ 4.0 – 4.2 count
        /// as a delivery. The policy stands in for 4.x's default delivery limit, with a limit of 1.
        @Test(.enabled(if: TestEnvironment.queueType == .quorum, "a delivery limit is a quorum queue's"))
        func pollsRefusedAPauseOutlastTheBrokersDeliveryLimit() async throws {
            try await BridgeBrokerUser.with { user in try await BridgeHarness.run("polling-refused-pause") { simulator in
                simulator.processingDelay = .seconds(15)
                simulator.pollWait = .milliseconds(100)
            } _: { h in
                var settings = try h.settings()
                settings.postbackPort = nil
                let policy = "limit-" + h.jobsQueue
                _ = try await TestEnvironment.brokerCtl(
                    "set_policy", policy, "^" + NSRegularExpression.escapedPattern(for: h.topology.pollsQueue) + "$",
                    #"{"delivery-limit":1}"#, "--apply-to", "queues", "--priority", "10")
                settings.brokerURL = try user.url
                try await h.startBridge(settings)
                try await user.forbidDeclaring([h.topology.pollsWaitQueue])
                let broker = try await TestEnvironment.connect()
                _ = try await broker.openChannel().deleteQueue(h.topology.pollsWaitQueue)
                let requests = (0..<2).map { TestRequest.thumbnails("polling-refused-pause-\($0)", index: $0) }
                try await h.publish(requests)
                try await Task.sleep(for: .seconds(20))  // three refusals each, and past the jobs' end
                try await h.topology.declare(on: broker)
                await broker.close()
                #expect(
                    await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(40)),
                    "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
                _ = try await TestEnvironment.brokerCtl("clear_policy", policy)
                for request in requests { #expect(h.events.events(for: request.id).map(\.status) == ["completed"]) }
            } }
        }

        /// Jobs submitted in polling mode are still polled after a restart into postback mode:
        /// every instance consumes the polls queue whatever its mode, so a switch strands none.
        @Test func jobsSubmittedInPollingModeArePolledAfterASwitchToPostbacks() async throws {
            try await BridgeHarness.run("polling-switch") { simulator in
                simulator.processingDelay = .seconds(10)
            } _: { h in
                var settings = try h.settings()
                let port = settings.postbackPort
                settings.postbackPort = nil
                settings.jobTimeout = "2m"
                let polling = try await h.startBridge(settings)
                let requests = (0..<3).map { TestRequest.thumbnails("polling-switch-\($0)", index: $0) }
                try await h.publish(requests)
                #expect(
                    await eventually(timeout: .seconds(20)) { (try? await h.simulator.stats()["polls"]) ?? 0 >= 3 },
                    "no poll went out\n\(h.diagnostics())")
                polling.signal(SIGTERM)
                #expect(await polling.waitForExit(timeout: .seconds(15)) != nil)
                settings.postbackPort = port
                try await h.startBridge(settings)
                #expect(
                    await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(40)),
                    "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
                let outcomes = Outcomes(events: h.events.events, published: window(since: Date.distantPast))
                outcomes.expectEachCompleted(requests, via: "poll")
            }
        }

        /// A backlog of slow jobs keeps many long polls open at once, and each
        /// result must still be read before Blitline's cache forgets it. The jobs take 30 s and the
        /// rate is Blitline's 5 a second, so one pass over 300 jobs takes about 67 s and the last
        /// result can be read about 37 s after its job ended; the cache keeps results 60 s instead
        /// of 5 minutes, so that the test ends in about a minute and a half and a bridge that
        /// spends its rate late (a poll sent to the back of the queue) loses results.
        @Test func aBacklogOf300SlowJobsLosesNoResultToTheCache() async throws {
            try await BridgeHarness.run("polling-backlog") { simulator in
                simulator.processingDelay = .seconds(30)
                simulator.resultRetention = .seconds(60)
            } _: { h in
                var settings = try h.settings()
                settings.postbackPort = nil
                settings.jobTimeout = "10m"
                settings.extra["POLL_RATE"] = "5"
                try await h.startBridge(settings)
                let requests = (0..<300).map { TestRequest.thumbnails("backlog-\($0)", index: $0 % 20) }
                let start = Date()
                // No barrier: its sentinel would wait 30 s more behind the simulator's processing, and
                // this test is about results lost, not repeated.
                try await h.publish(requests)
                #expect(
                    await h.events.waitForEvents(for: requests.map(\.id), timeout: .seconds(150)),
                    "no event for \(h.events.missing(requests.map(\.id)))\n\(h.diagnostics())")
                let outcomes = Outcomes(events: h.events.events, published: window(since: start))
                let elapsed = Date().timeIntervalSince(start)
                let stats = try await h.simulator.stats()
                print(
                    "polling-backlog: 300 jobs of 30 s in \(Int(elapsed)) s; the oldest result waited "
                        + "\(stats["result_wait_max_ms"]) ms for its first poll; \(stats["results_expired_unread"]) "
                        + "expired unread; \(stats["polls"]) polls, \(stats["polls_rate_limited"]) refused (429)")
                let completed = requests.filter { outcomes[$0].map(\.routingKey) == ["job.completed"] }
                #expect(
                    completed.count == requests.count,
                    """
                    \(completed.count) of \(requests.count) jobs completed; \(stats["results_expired_unread"]) results \
                    expired in Blitline's cache before a poll read them, the oldest read had waited \
                    \(stats["result_wait_max_ms"]) ms (\(stats["polls"]) polls, \(stats["polls_rate_limited"]) refused)
                    """)
                #expect(stats["results_expired_unread"] == 0)
                if completed.count == requests.count { outcomes.expectEachCompleted(requests, via: "poll") }
            }
        }
    }
}
