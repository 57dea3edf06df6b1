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

    /// Marks the oldest unconfirmed mandatory publish that matches a `basic.return` as returned.
    func markReturned(exchange: String, routingKey: String, messageID: String?, error: AMQPError) {
        var sequence = lowestUnconfirmed
        while sequence < nextPublishSequence {
            if var publish = pending[sequence], publish.mandatory, publish.returned == nil,
                publish.exchange == exchange, publish.routingKey == routingKey,
                publish.messageID == nil || publish.messageID == messageID
            {
                publish.returned = error
                pending[sequence] = publish
                return
            }
            sequence += 1
        }
    }

    /// Fails everything in flight on this channel: it is closed.
    func fail(_ error: AMQPError) {
        for publish in pending.values { publish.ticket.resume(throwing: error) }
        pending.removeAll()
        for consumer in consumers.values { consumer.finish(throwing: error) }
        consumers.removeAll()
    }
}
