import CRabbitMQ

extension AMQPProperties {
    /// Encodes the properties into a C structure whose memory lives in `arena`.
    func cProperties(in arena: CArena) -> amqp_basic_properties_t {
        var p = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func string(_ value: String?, _ flag: Int32, _ field: inout amqp_bytes_t) {
            guard let value else { return }
            field = arena.bytes(value)
            flags |= UInt32(flag)
        }
        string(contentType, AMQP_BASIC_CONTENT_TYPE_FLAG, &p.content_type)
        string(contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, &p.content_encoding)
        if let headers {
            p.headers = headers.cTable(in: arena)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        if let deliveryMode {
            p.delivery_mode = deliveryMode
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if let priority {
            p.priority = priority
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
        }
        string(correlationID, AMQP_BASIC_CORRELATION_ID_FLAG, &p.correlation_id)
        string(replyTo, AMQP_BASIC_REPLY_TO_FLAG, &p.reply_to)
        string(expiration, AMQP_BASIC_EXPIRATION_FLAG, &p.expiration)
        string(messageID, AMQP_BASIC_MESSAGE_ID_FLAG, &p.message_id)
        if let timestamp {
            p.timestamp = timestamp
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        string(type, AMQP_BASIC_TYPE_FLAG, &p.type)
        string(userID, AMQP_BASIC_USER_ID_FLAG, &p.user_id)
        string(appID, AMQP_BASIC_APP_ID_FLAG, &p.app_id)
        string(clusterID, AMQP_BASIC_CLUSTER_ID_FLAG, &p.cluster_id)
        p._flags = flags
        return p
    }

    /// Copies properties out of library memory.
    init(_ p: amqp_basic_properties_t) {
        self.init()
        let flags = p._flags
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        func string(_ flag: Int32, _ bytes: amqp_bytes_t) -> String? {
            has(flag) ? String(amqpBytes: bytes) : nil
        }
        contentType = string(AMQP_BASIC_CONTENT_TYPE_FLAG, p.content_type)
        contentEncoding = string(AMQP_BASIC_CONTENT_ENCODING_FLAG, p.content_encoding)
        headers = has(AMQP_BASIC_HEADERS_FLAG) ? AMQPTable(p.headers) : nil
        deliveryMode = has(AMQP_BASIC_DELIVERY_MODE_FLAG) ? p.delivery_mode : nil
        priority = has(AMQP_BASIC_PRIORITY_FLAG) ? p.priority : nil
        correlationID = string(AMQP_BASIC_CORRELATION_ID_FLAG, p.correlation_id)
        replyTo = string(AMQP_BASIC_REPLY_TO_FLAG, p.reply_to)
        expiration = string(AMQP_BASIC_EXPIRATION_FLAG, p.expiration)
        messageID = string(AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id)
        timestamp = has(AMQP_BASIC_TIMESTAMP_FLAG) ? p.timestamp : nil
        type = string(AMQP_BASIC_TYPE_FLAG, p.type)
        userID = string(AMQP_BASIC_USER_ID_FLAG, p.user_id)
        appID = string(AMQP_BASIC_APP_ID_FLAG, p.app_id)
        clusterID = string(AMQP_BASIC_CLUSTER_ID_FLAG, p.cluster_id)
    }
}
