@testable import AMQP
import Testing

/// How a channel turns the plain acks gathered in one pass into ack frames, without a broker.
@Suite struct ChannelStateAckTests {
    static func channel(delivered tags: ClosedRange<UInt64>) -> ChannelState {
        let channel = ChannelState(number: 1, id: 1)
        for tag in tags { channel.delivered(tag) }
        return channel
    }

    static func frames(_ channel: ChannelState) -> [String] {
        channel.takeAcks().map { "\($0.tag)\($0.multiple ? "+" : "")" }
    }

    @Test func theOldestDeliveriesAckedTogetherTakeOneMultipleAck() {
        let channel = Self.channel(delivered: 1...10)
        for tag: UInt64 in [3, 1, 4, 2] { channel.ackRequested(tag) }
        #expect(Self.frames(channel) == ["4+"])
        #expect(channel.unsettled == Array(5...10))
        #expect(channel.acksToSend.isEmpty)
    }

    @Test func aDeliveryStillInHandIsNeverCoveredAndTheAcksAfterItAreNotHeldBack() {
        let channel = Self.channel(delivered: 1...10)
        for tag: UInt64 in [1, 2, 4, 5, 9] { channel.ackRequested(tag) }
        #expect(Self.frames(channel) == ["2+", "4", "5", "9"])
        #expect(channel.unsettled == [3, 6, 7, 8, 10])

        // 3, 6 and 7 acked later are the oldest unsettled (4 and 5 went already): one ack up to 7.
        for tag: UInt64 in [7, 3, 6] { channel.ackRequested(tag) }
        #expect(Self.frames(channel) == ["7+"])
        #expect(channel.unsettled == [8, 10])
    }

    @Test func oneAckAloneIsPlain() {
        let channel = Self.channel(delivered: 1...3)
        channel.ackRequested(1)
        #expect(Self.frames(channel) == ["1"])
        channel.ackRequested(3)
        #expect(Self.frames(channel) == ["3"])
        #expect(channel.unsettled == [2])
        #expect(Self.frames(channel).isEmpty, "nothing gathered, nothing sent")
    }

    @Test func nacksRejectsAndExplicitMultipleAcksLeaveTheUnsettledTagsInStep() {
        let channel = Self.channel(delivered: 1...8)
        channel.settled(upTo: 2, multiple: false)  // a reject of 2
        channel.ackRequested(1)
        channel.ackRequested(3)
        #expect(Self.frames(channel) == ["3+"], "2 is settled already: 1 to 3 go as one")
        channel.settled(upTo: 6, multiple: true)  // ack(multiple: true) of 6
        #expect(channel.unsettled == [7, 8])
        channel.ackRequested(8)
        #expect(Self.frames(channel) == ["8"])
    }
}

/// Which publish a `basic.return` fails, without a broker: the broker says only the exchange, the
/// routing key and the message's properties.
@Suite struct ChannelStateReturnTests {
    static func channel(publishing messageIDs: [String?], to routingKey: String = "q") -> ChannelState {
        let channel = ChannelState(number: 1, id: 1)
        channel.confirmMode = true
        for messageID in messageIDs {
            let sequence = channel.nextPublishSequence
            channel.pending[sequence] = ChannelState.PendingPublish(
                ticket: PublishTicket(id: sequence), mandatory: true, exchange: "", routingKey: routingKey,
                messageID: messageID)
            channel.nextPublishSequence += 1
        }
        return channel
    }

    static let returned = AMQPError(.returned, replyCode: 312, "NO_ROUTE")

    /// A publish without a message id still awaiting its confirm, and a later one to the same queue
    /// with an id that the broker returns: the later one fails, the earlier one is not blamed (it
    /// would be published twice, and the returned one reported as delivered).
    @Test func aReturnFailsThePublishWithItsMessageIDBeforeOneWithout() {
        let channel = Self.channel(publishing: [nil, "b"])
        channel.markReturned(exchange: "", routingKey: "q", messageID: "b", error: Self.returned)
        #expect(channel.pending[1]?.returned == nil)
        #expect(channel.pending[2]?.returned != nil)
    }

    @Test func aReturnWithoutAMessageIDFailsTheOldestPublishWithout() {
        let channel = Self.channel(publishing: ["a", nil, nil])
        channel.markReturned(exchange: "", routingKey: "q", messageID: nil, error: Self.returned)
        #expect(channel.pending.keys.sorted().filter { channel.pending[$0]?.returned != nil } == [2])
    }

    @Test func aReturnOfAnotherQueueFailsNothing() {
        let channel = Self.channel(publishing: ["a"])
        channel.markReturned(exchange: "", routingKey: "other", messageID: "a", error: Self.returned)
        #expect(channel.pending[1]?.returned == nil)
    }
}
