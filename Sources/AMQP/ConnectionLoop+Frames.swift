import CRabbitMQ

extension ConnectionLoop {
    /// Dispatches a frame that arrived outside a synchronous method: deliveries, confirms, returns,
    /// cancels, closes and flow control. Owner thread.
    func handle(_ frame: amqp_frame_t) {
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else {
            return  // 0.11 can hand out heartbeat frames; header and body frames are read with their method.
        }
        let method = frame.payload.method
        func decoded<T>(_ type: T.Type) -> T { method.decoded!.assumingMemoryBound(to: T.self).pointee }
        let number = frame.channel

        switch method.id {
        case AMQP_BASIC_DELIVER_METHOD:
            deliver(decoded(amqp_basic_deliver_t.self), on: number)
        case AMQP_BASIC_ACK_METHOD:
            let ack = decoded(amqp_basic_ack_t.self)
            channels[number]?.settle(upTo: ack.delivery_tag, multiple: ack.multiple != 0, error: nil)
        case AMQP_BASIC_NACK_METHOD:
            let nack = decoded(amqp_basic_nack_t.self)
            channels[number]?.settle(
                upTo: nack.delivery_tag, multiple: nack.multiple != 0,
                error: AMQPError(.nacked, "the broker refused the message (basic.nack)"))
        case AMQP_BASIC_RETURN_METHOD:
            returned(decoded(amqp_basic_return_t.self), on: number)
        case AMQP_BASIC_CANCEL_METHOD:
            let cancel = decoded(amqp_basic_cancel_t.self)
            let tag = String(amqpBytes: cancel.consumer_tag)
            if cancel.nowait == 0 {
                var ok = amqp_basic_cancel_ok_t(consumer_tag: cancel.consumer_tag)
                _ = amqp_send_method(state, number, AMQP_BASIC_CANCEL_OK_METHOD, &ok)
            }
            channels[number]?.consumers.removeValue(forKey: tag)?.finish(
                throwing: AMQPError(.consumerCancelled, "the broker cancelled consumer \(tag)"))
        case AMQP_CHANNEL_CLOSE_METHOD:
            channelClosedByBroker(decoded(amqp_channel_close_t.self), on: number)
        case AMQP_CONNECTION_CLOSE_METHOD:
            connectionClosedByBroker(decoded(amqp_connection_close_t.self))
        case AMQP_CONNECTION_BLOCKED_METHOD:
            setBlocked(true, reason: String(amqpBytes: decoded(amqp_connection_blocked_t.self).reason))
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            setBlocked(false, reason: "")
        default:
            logger.debug("ignoring an unexpected AMQP method", metadata: ["method": "\(method.id)"])
        }
    }

    /// Reads the header and body frames that follow a `basic.get-ok` and hands them to `body`; a
    /// failed read closes the connection. (Deliveries and returns use `readContent`.)
    func withMessage<T>(on number: UInt16, reading what: String, _ body: (amqp_message_t) -> T) -> T? {
        var message = amqp_message_t()
        let reply = amqp_read_message(state, number, &message, 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            closeConnection(libraryError(reply.library_error, while: "reading \(what)"))
            return nil
        }
        defer { amqp_destroy_message(&message) }
        return body(message)
    }

    private func deliver(_ deliver: amqp_basic_deliver_t, on number: UInt16) {
        let consumerTag = String(amqpBytes: deliver.consumer_tag)
        let exchange = String(amqpBytes: deliver.exchange)
        let routingKey = String(amqpBytes: deliver.routing_key)
        let channel = channels[number]
        let consumer = channel?.consumers[consumerTag]
        // A message no consumer takes any more is not kept: its body is dropped.
        let maxBodyBytes: Int? = if let consumer { consumer.maxBodyBytes } else { 0 }
        guard let content = readContent(on: number, maxBodyBytes: maxBodyBytes, reading: "a delivery") else { return }
        guard let channel else {
            // The channel closed after the broker sent this: the broker has taken back what the
            // channel left unacknowledged, and any method on its number would close the connection (504).
            return
        }
        guard let consumer else {
            // The consumer was cancelled here while the broker was sending: give the message back,
            // unless it is a stream's, which refuses basic.reject by closing the connection (540)
            // and keeps its messages whether or not they are settled.
            if !channel.cancelledStreamConsumers.contains(consumerTag) {
                _ = amqp_basic_reject(state, number, deliver.delivery_tag, 1)
            }
            return
        }
        let first = consumer.append(
            AMQPDelivery(
                body: content.body, bodySize: content.bodySize, isBodyDiscarded: content.isBodyDiscarded,
                properties: content.properties, exchange: exchange, routingKey: routingKey,
                redelivered: deliver.redelivered != 0, deliveryTag: deliver.delivery_tag,
                consumerTag: consumerTag,
                channel: AMQPChannel(loop: self, number: number, id: channel.id)))
        channel.delivered(deliver.delivery_tag)
        if first { sinksToFlush.append(consumer) }
        deliveriesInPass += 1
    }

    private func returned(_ method: amqp_basic_return_t, on number: UInt16) {
        let error = AMQPError(
            .returned, replyCode: method.reply_code,
            "message returned: \(String(amqpBytes: method.reply_text))")
        let exchange = String(amqpBytes: method.exchange)
        let routingKey = String(amqpBytes: method.routing_key)
        // Only the message id is needed to match the return to its publish: the body is dropped.
        guard let content = readContent(on: number, maxBodyBytes: 0, reading: "a returned message") else { return }
        channels[number]?.markReturned(
            exchange: exchange, routingKey: routingKey, messageID: content.properties.messageID, error: error)
    }

    /// Answers a broker's `channel.close` with close-ok, as the protocol requires, and fails the
    /// channel's waiters. Returns the error.
    @discardableResult
    func channelClosedByBroker(_ close: amqp_channel_close_t, on number: UInt16) -> AMQPError {
        let error = AMQPError(
            .channelClosed, replyCode: close.reply_code, String(amqpBytes: close.reply_text))
        var ok = amqp_channel_close_ok_t(dummy: 0)
        let sent = amqp_send_method(state, number, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
        if sent != AMQP_STATUS_OK.rawValue {
            closeConnection(libraryError(sent, while: "answering channel.close"))
        }
        if framesQueued > 0 { closedWithFramesQueued.insert(number) }
        channels.removeValue(forKey: number)?.fail(error)
        logger.info("AMQP channel closed by the broker", metadata: ["channel": "\(number)", "reason": "\(error)"])
        return error
    }

    /// Answers a broker's `connection.close` with close-ok and closes. Returns the error.
    @discardableResult
    func connectionClosedByBroker(_ close: amqp_connection_close_t) -> AMQPError {
        let error = AMQPError(
            .connectionClosed, replyCode: close.reply_code, String(amqpBytes: close.reply_text))
        var ok = amqp_connection_close_ok_t(dummy: 0)
        _ = amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
        closeConnection(error)
        return error
    }
}
