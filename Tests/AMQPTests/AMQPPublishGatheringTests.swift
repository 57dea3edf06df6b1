import AMQP
import Testing

/// `AMQPConnection.Configuration.publishGathering`: publishes made while others wait leave with
/// them; a caller that publishes one message after another is not held back for long. The waits
/// are long (1 s and 300 ms) so that what is measured is the gathering, not the broker's speed or
/// the parallel suite's late wake-ups.
@Suite struct AMQPPublishGatheringTests {
    @Test func aPublishMadeWhileAnotherIsGatheredLeavesWithIt() async throws {
        let (connection, channel, queue) = try await Self.open(gathering: .seconds(1))
        let started = ContinuousClock.now
        async let first = Self.publish(on: channel, to: queue, since: started)
        try await Task.sleep(for: .milliseconds(50))
        let second = try await Self.publish(on: channel, to: queue, since: started)
        let firstConfirmed = try await first
        // The first waited out the gathering; the second, made 50 ms into it, left with it rather
        // than starting a gathering of its own (which would have confirmed it a second later).
        #expect(firstConfirmed >= .seconds(1), "the first publish was sent without gathering: \(firstConfirmed)")
        #expect(second - firstConfirmed < .milliseconds(500), "confirmed \(firstConfirmed) and \(second) after the start")
        #expect(try await channel.declareQueue(queue, passive: true).messageCount == 2)
        await connection.close()
    }

    @Test func aCallerPublishingOneAfterAnotherIsHeldBackOnlyAFewTimes() async throws {
        let (connection, channel, queue) = try await Self.open(gathering: .milliseconds(300))
        var held = 0
        for _ in 0..<30 {
            let started = ContinuousClock.now
            if try await Self.publish(on: channel, to: queue, since: started) >= .milliseconds(270) { held += 1 }
        }
        // Gathering finds nothing for this caller, so it rests after a few tries (a second each time).
        #expect(held > 0, "no publish was gathered at all")
        #expect(held <= 12, "\(held) of 30 publishes waited out a gathering")
        #expect(try await channel.declareQueue(queue, passive: true).messageCount == 30)
        await connection.close()
    }

    /// A connection that gathers publishes, a confirming channel, and a queue of its own.
    static func open(gathering: Duration) async throws -> (AMQPConnection, AMQPChannel, String) {
        var configuration = try AMQPConnection.Configuration(url: TestBroker.url)
        configuration.publishGathering = gathering
        let connection = try await AMQPConnection.connect(configuration)
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        let queue = try await channel.declareQueue("", durable: false, exclusive: true).name
        return (connection, channel, queue)
    }

    /// Publishes one message and returns when, after `since`, the broker confirmed it.
    static func publish(on channel: AMQPChannel, to queue: String, since: ContinuousClock.Instant) async throws -> Duration {
        try await channel.publish(Array("gathered".utf8), routingKey: queue, properties: AMQPProperties())
        return ContinuousClock.now - since
    }
}
