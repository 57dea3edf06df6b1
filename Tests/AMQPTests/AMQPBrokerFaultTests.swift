import AMQP
import Foundation
import Testing

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
        try TestBroker.control("ctl", "stop_app")
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

        try TestBroker.control("ctl", "start_app")
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

    @Test func publishingWaitsDuringAMemoryAlarmAndResumesAfter() async throws {
        let publisher = try await TestBroker.connect()
        defer { Task { await publisher.close() } }
        let channel = try await publisher.openChannel()
        let queue = TestBroker.uniqueName("alarm")
        try await channel.declareQueue(queue, durable: false)
        try await channel.enableConfirms()
        try await channel.publish([0], routingKey: queue)

        try TestBroker.control("ctl", "set_vm_memory_high_watermark", "0.0001")
        var alarmCleared = false
        defer { if !alarmCleared { _ = try? TestBroker.control("ctl", "set_vm_memory_high_watermark", "0.4") } }

        // RabbitMQ blocks a connection when it next publishes during the alarm.
        let publishing = Task {
            for index in 1...20 { try await channel.publish([UInt8(index)], routingKey: queue) }
        }
        #expect(await eventually { publisher.isBlocked }, "the broker never said connection.blocked")
        try await Task.sleep(for: .seconds(2))
        let waiting = try await TestBroker.connect()
        let observer = try await waiting.openChannel()
        #expect(try await observer.declareQueue(queue, passive: true).messageCount <= 2, "published while blocked")
        #expect(publisher.closeReason == nil)

        try TestBroker.control("ctl", "set_vm_memory_high_watermark", "0.4")
        alarmCleared = true
        try await publishing.value
        #expect(!publisher.isBlocked)
        #expect(try await observer.declareQueue(queue, passive: true).messageCount == 21)
        try await observer.deleteQueue(queue)
        await waiting.close()
    }
}
