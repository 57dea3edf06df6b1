import AMQP
import Testing

/// `AMQPConnection.Configuration.publishGathering`: publishes made while others wait leave with
/// them; a caller that publishes one message after another is not held back for long. The waits
/// are long (1 s and 2 s) so that what is measured is the gathering, not the broker's speed or
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
        // A gathering of 2 s tells a publish held back from one slowed by the parallel suite (which
        // has taken a second to confirm on this machine).
        let (connection, channel, queue) = try await Self.open(gathering: .seconds(2))
        func isHeld() async throws -> Bool {
            try await Self.publish(on: channel, to: queue, since: .now) >= .milliseconds(1_800)
        }
        // Gathering finds nothing for this caller, so it rests after a few tries (six, as the
        // moving average falls from 1 under 0.5), counted up to the first publish not held back:
        // how long each publish takes does not change the count, as it changes how many publishes
        // one second's rest covers.
        var held = 0
        while held < 30, try await isHeld() { held += 1 }
        #expect(held > 0, "no publish was gathered at all")
        #expect(held <= 8, "\(held) publishes in a row waited out a gathering")
        // Resting for a second: the next one leaves at once too.
        #expect(try await !isHeld(), "a publish was held back while gathering rested")
        #expect(try await channel.declareQueue(queue, passive: true).messageCount == held + 2)
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
