import CRabbitMQ

/// Channel operations, run on the owner thread from `perform` closures.
extension ConnectionLoop {
    func openChannel() throws(AMQPError) -> AMQPChannel {
        guard let state else { throw AMQPError(.connectionClosed, "connection closed") }
        let limit = UInt16(clamping: amqp_get_channel_max(state) > 0 ? Int(amqp_get_channel_max(state)) : 2047)
        // Reuse the lowest free number: librabbitmq keeps a memory pool per number ever used. Not
        // one whose closed channel still has frames queued: they would reach the new channel.
        guard
            let number = (1...max(limit, 1)).first(where: { channels[$0] == nil && !closedWithFramesQueued.contains($0) })
        else {
            throw AMQPError(.invalidArgument, "all \(limit) channels are in use")
        }
        _ = amqp_channel_open(state, number)
        try checkReply(amqp_get_rpc_reply(state), channel: number, doing: "opening a channel")
        let channel = ChannelState(number: number, id: nextChannelID)
        nextChannelID += 1
        channels[number] = channel
        return AMQPChannel(loop: self, number: number, id: channel.id)
    }

    /// The open channel behind a handle; throws if it has been closed since.
    func channel(_ handle: AMQPChannel) throws(AMQPError) -> ChannelState {
        guard let channel = channels[handle.number], channel.id == handle.id else {
            throw AMQPError(.channelClosed, "channel \(handle.number) is closed")
        }
        return channel
    }

    func closeChannel(_ handle: AMQPChannel) throws(AMQPError) {
        guard let channel = channels[handle.number], channel.id == handle.id else { return }
        let reply = amqp_channel_close(state, handle.number, Int32(AMQP_REPLY_SUCCESS))
        if framesQueued > 0 { closedWithFramesQueued.insert(handle.number) }
        channels.removeValue(forKey: handle.number)?.fail(
            AMQPError(.channelClosed, replyCode: 200, "channel closed by the application"))
        try checkReply(reply, channel: channel.number, doing: "closing a channel")
    }

    /// Runs a synchronous AMQP method with its C arguments in the arena, and checks the reply.
    func rpc<T>(
        _ handle: AMQPChannel, _ what: String, _ call: (amqp_connection_state_t, UInt16) -> T
    ) throws(AMQPError) -> T {
        _ = try channel(handle)
        arena.reset()
        defer { arena.reset() }
        let result = call(state!, handle.number)
        try checkReply(amqp_get_rpc_reply(state), channel: handle.number, doing: what)
        return result
    }

    /// Turns a method reply into an error, answering broker closes as the protocol requires.
    func checkReply(_ reply: amqp_rpc_reply_t, channel number: UInt16, doing what: String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            // Word from the broker: a call it took long to answer, reading its heartbeats meanwhile
            // (librabbitmq drops them unseen), must not leave the connection looking silent.
            lastInbound = .now
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            lastInbound = .now
            switch reply.reply.id {
            case AMQP_CHANNEL_CLOSE_METHOD:
                throw channelClosedByBroker(
                    reply.reply.decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee, on: number)
            case AMQP_CONNECTION_CLOSE_METHOD:
                throw connectionClosedByBroker(
                    reply.reply.decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee)
            default:
                let error = AMQPError(.protocolError, "unexpected method \(reply.reply.id) while \(what)")
                closeConnection(error)
                throw error
            }
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let error = libraryError(reply.library_error, while: what)
            closeConnection(error)
            throw error
        default:
            let error = AMQPError(.protocolError, "no reply while \(what)")
            closeConnection(error)
            throw error
        }
    }

    /// Publishes on the owner thread after the exact pre-flight check (`validateForPublish`): a
    /// message that cannot be encoded is refused before a byte is written. A cancelled publish
    /// is dropped here, unwritten.
    func publish(
        _ body: [UInt8], on handle: AMQPChannel, exchange: String, routingKey: String,
        mandatory: Bool, properties: AMQPProperties, ticket: PublishTicket
    ) {
        guard !ticket.isCancelled else { return }
        let channel: ChannelState
        do throws(AMQPError) {
            channel = try self.channel(handle)
            try properties.validateForPublish(frameMax: frameMax, exchange: exchange, routingKey: routingKey)
        } catch {
            ticket.resume(throwing: error)
            return
        }
        arena.reset()
        var cProperties = properties.cProperties(in: arena)
        let status = body.withUnsafeBytes { buffer in
            blockingCall {
                amqp_basic_publish(
                    state, handle.number, arena.bytes(exchange), arena.bytes(routingKey),
                    mandatory ? 1 : 0, 0, &cProperties,
                    amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress)))
            }
        }
        arena.reset()
        guard status == AMQP_STATUS_OK.rawValue else {
            // The basic.publish frame may be on the wire without its header: the broker would take
            // the next frame on this connection as the missing one. Only closing is safe.
            let error = libraryError(status, while: "publishing")
            closeConnection(error)
            ticket.resume(throwing: error)
            return
        }
        guard channel.confirmMode else {
            ticket.resume()
            return
        }
        channel.pending[channel.nextPublishSequence] = ChannelState.PendingPublish(
            ticket: ticket, mandatory: mandatory, exchange: exchange,
            routingKey: routingKey, messageID: properties.messageID)
        channel.nextPublishSequence += 1
    }

    func consume(
        _ handle: AMQPChannel, queue: String, prefetch: UInt16, exclusive: Bool, arguments: AMQPTable,
        maxBodyBytes: Int?
    ) throws(AMQPError) -> AMQPConsumer {
        // basic.qos with global=false applies to consumers started after it on this channel.
        _ = try rpc(handle, "setting the prefetch") { state, number in
            amqp_basic_qos(state, number, 0, prefetch, 0)
        }
        let tag = try rpc(handle, "starting a consumer on \(queue)") { state, number -> String? in
            guard
                let ok = amqp_basic_consume(
                    state, number, arena.bytes(queue), amqp_empty_bytes, 0, 0, exclusive ? 1 : 0,
                    arguments.cTable(in: arena))
            else { return nil }
            return String(amqpBytes: ok.pointee.consumer_tag)
        }
        guard let tag else { throw AMQPError(.protocolError, "no consumer tag from basic.consume-ok") }
        let (stream, continuation) = ConsumerSink.Batches.makeStream()
        try channel(handle).consumers[tag] = ConsumerSink(
            continuation, maxBodyBytes: maxBodyBytes, isStream: arguments["x-stream-offset"] != nil)
        let loop = self
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                loop.submit(
                    Command(
                        run: { try? $0.cancelConsumer(handle, tag: tag) },
                        fail: { _ in }))
            }
        }
        return AMQPConsumer(tag: tag, channel: handle, batches: stream)
    }

    func cancelConsumer(_ handle: AMQPChannel, tag: String) throws(AMQPError) {
        guard let channel = channels[handle.number], channel.id == handle.id,
            let consumer = channel.consumers.removeValue(forKey: tag)
        else { return }
        if consumer.isStream { channel.cancelledStreamConsumers.insert(tag) }
        consumer.finish()
        _ = try rpc(handle, "cancelling consumer \(tag)") { state, number in
            amqp_basic_cancel(state, number, arena.bytes(tag))
        }
    }

    func get(_ handle: AMQPChannel, queue: String) throws(AMQPError) -> AMQPDelivery? {
        let channel = try channel(handle)
        let reply = amqp_basic_get(state, handle.number, arena.bytes(queue), 0)
        arena.reset()
        try checkReply(reply, channel: handle.number, doing: "getting from \(queue)")
        guard reply.reply.id == AMQP_BASIC_GET_OK_METHOD else { return nil }
        let ok = reply.reply.decoded!.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        let exchange = String(amqpBytes: ok.exchange)
        let routingKey = String(amqpBytes: ok.routing_key)
        let delivery = withMessage(on: handle.number, reading: "a message from \(queue)") { message in
            AMQPDelivery(
                body: [UInt8](amqpBytes: message.body), bodySize: UInt64(message.body.len), isBodyDiscarded: false,
                properties: AMQPProperties(message.properties),
                exchange: exchange, routingKey: routingKey, redelivered: ok.redelivered != 0,
                deliveryTag: ok.delivery_tag, consumerTag: "",
                channel: AMQPChannel(loop: self, number: handle.number, id: channel.id))
        }
        guard let delivery else { throw closeReasonOrClosed }
        channel.delivered(ok.delivery_tag)
        return delivery
    }

    /// ack, nack and reject: no reply comes; errors arrive later as a channel close. A plain ack
    /// waits in the channel's state for `sendGatheredAcks`; the others go at once, after the acks
    /// gathered before them (`execute` sends those first).
    func settleDelivery(_ handle: AMQPChannel, _ tag: UInt64, _ settlement: Settlement) {
        guard let state, let channel = channels[handle.number], channel.id == handle.id else { return }
        let number = handle.number
        let status: Int32
        switch settlement {
        case .ack:
            channel.ackRequested(tag)
            return
        case .ackThrough:
            status = amqp_basic_ack(state, number, tag, 1)
            channel.settled(upTo: tag, multiple: true)
        case .nack(let multiple, let requeue):
            status = amqp_basic_nack(state, number, tag, multiple ? 1 : 0, requeue ? 1 : 0)
            channel.settled(upTo: tag, multiple: multiple)
        case .reject(let requeue):
            status = amqp_basic_reject(state, number, tag, requeue ? 1 : 0)
            channel.settled(upTo: tag, multiple: false)
        }
        if status != AMQP_STATUS_OK.rawValue {
            closeConnection(libraryError(status, while: "acknowledging"))
        }
    }

    /// Sends the plain acks gathered on every channel (`ChannelState.takeAcks`).
    func sendGatheredAcks() {
        for channel in channels.values where !channel.acksToSend.isEmpty {
            for ack in channel.takeAcks() {
                guard let state else { return }
                let status = amqp_basic_ack(state, channel.number, ack.tag, ack.multiple ? 1 : 0)
                if status != AMQP_STATUS_OK.rawValue {
                    closeConnection(libraryError(status, while: "acknowledging"))
                    return
                }
            }
        }
    }
}
