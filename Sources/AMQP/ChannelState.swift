/// What the connection's thread knows about one open channel.
final class ChannelState {
    /// A publish waiting for the broker's confirm (its caller may have stopped waiting: the
    /// confirm is consumed all the same).
    struct PendingPublish {
        let ticket: PublishTicket
        let mandatory: Bool
        let exchange: String
        let routingKey: String
        let messageID: String?
        var returned: AMQPError?
    }

    let number: UInt16
    /// Distinguishes this channel from an earlier one that had the same number.
    let id: UInt64
    var confirmMode = false
    /// The broker numbers published messages from 1 once confirms are on.
    var nextPublishSequence: UInt64 = 1
    var lowestUnconfirmed: UInt64 = 1
    var pending: [UInt64: PendingPublish] = [:]
    var consumers: [String: ConsumerSink] = [:]
    /// Stream consumers cancelled here, whose deliveries on their way are left unsettled.
    var cancelledStreamConsumers: Set<String> = []
    /// Delivery tags handed out on this channel and not yet settled, ascending: the broker numbers
    /// a channel's deliveries (consumed or got) 1, 2, 3…
    private(set) var unsettled: [UInt64] = []
    /// Plain acks asked for since they were last sent (`takeAcks`).
    private(set) var acksToSend: [UInt64] = []

    init(number: UInt16, id: UInt64) {
        self.number = number
        self.id = id
    }

    /// Settles every publish up to `tag` (or only `tag`), failing them with `error` when given.
    func settle(upTo tag: UInt64, multiple: Bool, error: AMQPError?) {
        let range = multiple ? lowestUnconfirmed...max(tag, lowestUnconfirmed) : tag...tag
        for sequence in range {
            guard let publish = pending.removeValue(forKey: sequence) else { continue }
            if let failure = error ?? publish.returned {
                publish.ticket.resume(throwing: failure)
            } else {
                publish.ticket.resume()
            }
        }
        while lowestUnconfirmed < nextPublishSequence, pending[lowestUnconfirmed] == nil {
            lowestUnconfirmed += 1
        }
    }

    /// Marks the oldest unconfirmed mandatory publish that matches a `basic.return` as returned:
    /// one with the same exchange, routing key and message id; failing that, one where either side
    /// has no message id. An earlier publish without an id is not blamed for a later one's return:
    /// it would be published again, and the returned one counted as delivered.
    func markReturned(exchange: String, routingKey: String, messageID: String?, error: AMQPError) {
        func oldest(_ matches: (PendingPublish) -> Bool) -> UInt64? {
            (lowestUnconfirmed..<max(lowestUnconfirmed, nextPublishSequence)).first { sequence in
                guard let publish = pending[sequence] else { return false }
                return publish.mandatory && publish.returned == nil && publish.exchange == exchange
                    && publish.routingKey == routingKey && matches(publish)
            }
        }
        guard
            let sequence = oldest({ $0.messageID == messageID })
                ?? oldest({ $0.messageID == nil || messageID == nil })
        else { return }
        pending[sequence]?.returned = error
    }

    /// A delivery handed out with `tag`, to be settled later.
    func delivered(_ tag: UInt64) {
        unsettled.append(tag)
    }

    /// A plain ack asked for: gathered, and sent with the others by `takeAcks`.
    func ackRequested(_ tag: UInt64) {
        acksToSend.append(tag)
    }

    /// Everything up to `tag` (or only `tag`) was settled by a frame sent meanwhile.
    func settled(upTo tag: UInt64, multiple: Bool) {
        if multiple {
            unsettled.removeFirst(unsettled.prefix { $0 <= tag }.count)
        } else if let index = index(of: tag) {
            unsettled.remove(at: index)
        }
    }

    /// The ack frames that settle the gathered acks, in the order to send them: one ack with
    /// `multiple` for the oldest unsettled deliveries when they are all among them (a batch the
    /// application finished together costs the broker one settlement), then one ack for each
    /// other. None waits for an older delivery to be settled: an ack is never held back.
    func takeAcks() -> [(tag: UInt64, multiple: Bool)] {
        guard !acksToSend.isEmpty else { return [] }
        let acks = acksToSend.sorted()
        acksToSend.removeAll(keepingCapacity: true)
        var frames: [(tag: UInt64, multiple: Bool)] = []
        var oldest = 0
        while oldest < unsettled.count, oldest < acks.count, unsettled[oldest] == acks[oldest] { oldest += 1 }
        if oldest > 0 {
            frames.append((unsettled[oldest - 1], oldest > 1))
            unsettled.removeFirst(oldest)
        }
        for tag in acks[oldest...] {
            frames.append((tag, false))
            if let index = index(of: tag) { unsettled.remove(at: index) }
        }
        return frames
    }

    private func index(of tag: UInt64) -> Int? {
        var low = 0, high = unsettled.count
        while low < high {
            let middle = (low + high) / 2
            if unsettled[middle] < tag { low = middle + 1 } else { high = middle }
        }
        return low < unsettled.count && unsettled[low] == tag ? low : nil
    }

    /// Fails everything in flight on this channel: it is closed.
    func fail(_ error: AMQPError) {
        for publish in pending.values { publish.ticket.resume(throwing: error) }
        pending.removeAll()
        for consumer in consumers.values { consumer.finish(throwing: error) }
        consumers.removeAll()
    }
}
