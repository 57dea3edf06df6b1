import AMQP
import Foundation
import Testing
import TestSupport

/// Tests that stop, freeze or alarm the broker. deploy/test.sh runs suites named `…FaultTests`
/// one at a time, after the others.
@Suite(.serialized) struct AMQPBrokerFaultTests {
    @Test func brokerRestartFailsCallsInFlightAndANewConnectionWorksAfter() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = TestBroker.uniqueName("restart")
        try await channel.declareQueue(queue, durable: true)
        try await channel.enableConfirms()
        let consumer = try await channel.consume(queue: queue, prefetch: 10)

        // Publish continuously while the broker goes down under it.
        let publishing = Task {
            var confirmed = 0
            while true {
                do {
                    try await channel.publish([1], routingKey: queue, properties: .init(deliveryMode: 2))
                    confirmed += 1
                } catch {
                    return (confirmed, error as? AMQPError)
                }
            }
        }
        let consuming = Task { () -> (any Error)? in
            do {
                for try await delivery in consumer { delivery.ack() }
                return nil
            } catch { return error }
        }
        try await Task.sleep(for: .milliseconds(300))
        let stoppedAt = ContinuousClock.now
        try await TestBroker.control("ctl", "stop_app")
        let (confirmed, publishError) = await publishing.value
        let consumeError = await consuming.value
        let reason = await connection.closed()
        let detection = ContinuousClock.now - stoppedAt

        #expect(confirmed > 0)
        #expect(publishError?.isConnectionError == true)
        // The broker says why (320 CONNECTION_FORCED). On a loaded machine the socket can also fail
        // under a publish before the broker's close frame is read: then it is a plain closed connection.
        #expect(
            reason.replyCode == AMQPError.ReplyCode.connectionForced
                || (reason.code == .connectionClosed && reason.replyCode == nil),
            "\(reason)")
        #expect((consumeError as? AMQPError)?.isConnectionError == true)
        #expect(detection < .seconds(10), "calls in flight failed only after \(detection)")

        try await TestBroker.control("ctl", "start_app")
        let again = try await TestBroker.connect()
        let fresh = try await again.openChannel()
        #expect(try await fresh.declareQueue(queue, passive: true).name == queue)
        try await fresh.deleteQueue(queue)
        await again.close()
    }

    @Test func frozenBrokerIsDetectedWithinTwoHeartbeatsEvenWhenOnlyPublishing() async throws {
        let connection = try await TestBroker.connect(heartbeat: 2)
        let channel = try await connection.openChannel()
        let queue = TestBroker.uniqueName("frozen")
        try await channel.declareQueue(queue, durable: false, autoDelete: false)
        try await channel.enableConfirms()
        try await channel.publish([0], routingKey: queue)

        let pid = try TestBroker.pid()
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        let frozenAt = ContinuousClock.now
        let error = await #expect(throws: AMQPError.self) {
            for _ in 0..<1_000_000 {
                try await channel.publish([UInt8](repeating: 7, count: 4096), routingKey: queue)
            }
        }
        let detection = ContinuousClock.now - frozenAt
        #expect(error?.isConnectionError == true)
        #expect(detection < .seconds(8), "a silent broker took \(detection) to detect at heartbeat 2 s")
        #expect(connection.closeReason != nil)

        kill(pid, SIGCONT)
        let again = try await TestBroker.connect()
        try await again.openChannel().deleteQueue(queue)
        await again.close()
    }

    /// A call the broker is slow to answer (its queue's process busy) while it sends heartbeats
    /// all along: the answer is word from the broker, so the connection is not taken for silent
    /// once the call returns.
    @Test func aCallAnsweredAfterLongerThanTwoHeartbeatsLeavesTheConnectionOpen() async throws {
        let connection = try await TestBroker.connect(heartbeat: 2)
        let channel = try await connection.openChannel()
        let queue = TestBroker.uniqueName("slow-answer")
        try await channel.declareQueue(queue, durable: false, autoDelete: false)
        let process = "element(2, rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, <<\"\(queue)\">>)))"
        try await TestBroker.control("ctl", "eval", "sys:suspend(amqqueue:get_pid(\(process))).")
        let purge = Task { try await channel.purgeQueue(queue) }
        try await Task.sleep(for: .seconds(7))  // past the loop's silence limit (2 × 2 s + 1 s)
        try await TestBroker.control("ctl", "eval", "sys:resume(amqqueue:get_pid(\(process))).")
        #expect(try await purge.value == 0)
        try await Task.sleep(for: .seconds(1))  // the loop's next passes
        #expect(connection.closeReason == nil, "\(String(describing: connection.closeReason))")
        try await channel.deleteQueue(queue)
        await connection.close()
    }

    /// Large publishes during a memory alarm fill the socket's buffers, and a publish call then
    /// waits in the kernel for longer than two heartbeats: the broker is alive (its heartbeats
    /// keep coming), so the connection stays open, and every message goes once the alarm clears.
    /// Without heartbeats (0) the broker sends nothing at all meanwhile, and the connection stays
    /// open all the same.
    @Test(arguments: [2, 0])
    func largePublishesBlockedByAnAlarmLeaveTheConnectionOpen(heartbeat: Int) async throws {
        try await withCleanup { cleanup in
            let publisher = try await cleanup.connect(heartbeat: heartbeat)
            let channel = try await publisher.openChannel()
            let queue = TestBroker.uniqueName("alarm-large")
            try await channel.declareQueue(queue, durable: false)
            cleanup.add { _ = try? await TestBroker.connect().openChannel().deleteQueue(queue) }
            try await channel.enableConfirms()
            let body = [UInt8](repeating: 7, count: 1 << 20)
            let publishes = try await Self.withMemoryAlarm {
                let publishes = (0..<24).map { _ in Task { try await channel.publish(body, routingKey: queue) } }
                try await Task.sleep(for: .seconds(10))  // five heartbeats
                #expect(publisher.closeReason == nil, "\(String(describing: publisher.closeReason))")
                return publishes
            }
            for publish in publishes { try await publish.value }
            #expect(try await channel.declareQueue(queue, passive: true).messageCount == 24)
        }
    }

    @Test func publishingWaitsDuringAMemoryAlarmAndResumesAfter() async throws {
        try await withCleanup { cleanup in
            let publisher = try await cleanup.connect()
            let channel = try await publisher.openChannel()
            let queue = TestBroker.uniqueName("alarm")
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            try await channel.publish([0], routingKey: queue)

            let (publishing, waiting, observer) = try await Self.withMemoryAlarm {
                // RabbitMQ blocks a connection when it next publishes during the alarm.
                let publishing = Task {
                    for index in 1...20 { try await channel.publish([UInt8(index)], routingKey: queue) }
                }
                #expect(await eventually { publisher.isBlocked }, "the broker never said connection.blocked")
                try await Task.sleep(for: .seconds(2))
                let waiting = try await cleanup.connect()
                let observer = try await waiting.openChannel()
                #expect(try await observer.declareQueue(queue, passive: true).messageCount <= 2, "published while blocked")
                #expect(publisher.closeReason == nil)
                return (publishing, waiting, observer)
            }
            try await publishing.value
            #expect(!publisher.isBlocked)
            #expect(try await observer.declareQueue(queue, passive: true).messageCount == 21)
            try await observer.deleteQueue(queue)
            await waiting.close()
        }
    }

    @Test func aPublishCancelledWhileTheBrokerBlocksPublishingThrowsAtOnceAndIsNeverWritten() async throws {
        try await withCleanup { cleanup in
            let publisher = try await cleanup.connect()
            let observing = try await cleanup.connect()
            let channel = try await publisher.openChannel()
            let queue = TestBroker.uniqueName("cancel")
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            let changes = Task {
                var seen: [Bool] = []
                for await blocked in publisher.blockedChanges() {
                    seen.append(blocked)
                    if seen.count >= 3 { break }
                }
                return seen
            }

            try await Self.withMemoryAlarm {
                // RabbitMQ blocks a connection when it next publishes during the alarm: the publishes
                // that make it do so are written, and may or may not be confirmed meanwhile.
                var attempt = 0
                while !publisher.isBlocked, attempt < 30 {
                    attempt += 1
                    _ = await Self.publish(channel, queue: queue, messageID: "before-\(attempt)", timeout: .seconds(1))
                }
                try #require(publisher.isBlocked, "the broker never said connection.blocked")

                let started = ContinuousClock.now
                let outcome = await Self.publish(channel, queue: queue, messageID: "cancelled", timeout: .seconds(1))
                let waited = ContinuousClock.now - started
                #expect(throws: CancellationError.self) { try outcome.get() }
                #expect(waited < .seconds(5), "a publish cancelled after 1 s returned after \(waited)")
            }

            #expect(await eventually(timeout: .seconds(30)) { !publisher.isBlocked })
            try await channel.publish([1], routingKey: queue, properties: .init(messageID: "after"))
            #expect(publisher.closeReason == nil)
            #expect(await changes.value == [false, true, false])

            // The cancelled publish, still waiting when it was cancelled, was never written.
            let observer = try await observing.openChannel()
            var ids: [String] = []
            while let message = try await observer.get(queue: queue) {
                ids.append(message.properties.messageID ?? "")
                message.ack()
            }
            #expect(!ids.contains("cancelled"), "\(ids)")
            #expect(ids.last == "after", "\(ids)")
            try await observer.deleteQueue(queue)
        }
    }

    @Test func aPublishCancelledWhileAwaitingItsConfirmStaysTrackedAndItsLateConfirmIsHarmless() async throws {
        try await withCleanup { cleanup in
            let connection = try await cleanup.connect()
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName("late-confirm")
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            try await channel.publish([0], routingKey: queue, properties: .init(messageID: "first"))

            // A frozen broker leaves the publish written to the socket and unconfirmed.
            let pid = try TestBroker.pid()
            kill(pid, SIGSTOP)
            var frozen = true
            defer { if frozen { kill(pid, SIGCONT) } }
            let outcome = await Self.publish(channel, queue: queue, messageID: "written", timeout: .seconds(1))
            kill(pid, SIGCONT)
            frozen = false
            #expect(throws: CancellationError.self) { try outcome.get() }

            // Its confirm arrives now and is consumed without resuming anyone; later ones settle as usual.
            for index in 1...3 {
                try await channel.publish([UInt8(index)], routingKey: queue, properties: .init(messageID: "after-\(index)"))
            }
            #expect(connection.closeReason == nil)
            var ids: [String] = []
            while let message = try await channel.get(queue: queue) {
                ids.append(message.properties.messageID ?? "")
                message.ack()
            }
            #expect(ids == ["first", "written", "after-1", "after-2", "after-3"])
            try await channel.deleteQueue(queue)
        }
    }

    /// Runs `body` under a memory alarm on the test broker, and clears the alarm afterwards
    /// whether `body` throws or not.
    static func withMemoryAlarm<T>(_ body: () async throws -> T) async throws -> T {
        try await TestBroker.control("ctl", "set_vm_memory_high_watermark", "0.0000001")
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        try await TestBroker.control("ctl", "set_vm_memory_high_watermark", "0.4")
        return try result.get()
    }

    /// Publishes in a task that is cancelled after `timeout`.
    static func publish(
        _ channel: AMQPChannel, queue: String, messageID: String, timeout: Duration
    ) async -> Result<Void, any Error> {
        let publishing = Task { try await channel.publish([0], routingKey: queue, properties: .init(messageID: messageID)) }
        let timer = Task {
            try await Task.sleep(for: timeout)
            publishing.cancel()
        }
        let result = await publishing.result
        timer.cancel()
        return result
    }
}
