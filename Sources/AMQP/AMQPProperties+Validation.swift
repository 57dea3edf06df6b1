extension AMQPProperties {
    /// Checks, without sending anything, that a message with these properties can be published
    /// on a connection whose negotiated frame size is `frameMax` (`AMQPConnection.frameMax`).
    ///
    /// It is the exact check `AMQPChannel.publish` runs before it writes a byte, so a copy that
    /// passes here is not refused there. It throws `AMQPError.Code.invalidArgument`, naming the
    /// field and the sizes, when:
    /// - `exchange`, `routingKey` or a short-string property (`contentType`, `contentEncoding`,
    ///   `correlationID`, `replyTo`, `expiration`, `messageID`, `type`, `userID`, `appID`,
    ///   `clusterID`) is longer than 255 bytes of UTF-8;
    /// - a key of `headers` or of a table nested in it is longer than 255 bytes;
    /// - tables and arrays nest deeper than `AMQPTable.maximumDepth`;
    /// - the content header frame (class, weight, body size, property flags and the encoded
    ///   properties) is larger than `frameMax` minus the 8 bytes of frame envelope: librabbitmq
    ///   0.11 writes the `basic.publish` frame before it finds that the header does not fit, which
    ///   would leave the broker waiting for a header that never comes.
    public func validateForPublish(frameMax: Int, exchange: String = "", routingKey: String = "") throws(AMQPError) {
        try Self.checkShortString(exchange, "the exchange name")
        try Self.checkShortString(routingKey, "the routing key")
        var propertiesSize = 0
        func add(_ value: String?, _ name: String) throws(AMQPError) {
            guard let value else { return }
            try Self.checkShortString(value, name)
            propertiesSize += 1 + value.utf8.count
        }
        try add(contentType, "contentType")
        try add(contentEncoding, "contentEncoding")
        try add(correlationID, "correlationID")
        try add(replyTo, "replyTo")
        try add(expiration, "expiration")
        try add(messageID, "messageID")
        try add(type, "type")
        try add(userID, "userID")
        try add(appID, "appID")
        try add(clusterID, "clusterID")
        let headersSize = try headers?.encodedSize(field: "headers", depth: 1) ?? 0
        propertiesSize += headersSize
        if deliveryMode != nil { propertiesSize += 1 }
        if priority != nil { propertiesSize += 1 }
        if timestamp != nil { propertiesSize += 8 }
        let frameSize = Self.headerFrameOverhead + propertiesSize
        let limit = frameMax - Self.frameEnvelope
        guard frameSize <= limit else {
            throw AMQPError(
                .invalidArgument,
                "content header: \(frameSize) bytes (headers \(headersSize)), over the \(limit) bytes "
                    + "a frame of \(frameMax) bytes carries")
        }
    }

    /// Frame type, channel and size before the payload, end marker after it.
    static let frameEnvelope = 8
    /// Class id, weight, body size and the 16 bits of property flags (the 14 basic properties fit).
    static let headerFrameOverhead = 2 + 2 + 8 + 2

    static func checkShortString(_ value: String, _ name: String) throws(AMQPError) {
        let count = value.utf8.count
        guard count <= 255 else {
            throw AMQPError(.invalidArgument, "\(name): \(count) bytes of UTF-8, over the 255 a short string holds")
        }
    }
}

extension AMQPTable {
    /// The table's size in AMQP 0-9-1 encoding (with RabbitMQ's field types, as librabbitmq
    /// writes it), after checking its keys and depth.
    func encodedSize(field: String, depth: Int) throws(AMQPError) -> Int {
        do throws(EncodingFailure) {
            return try encodedSize(depth: depth)
        } catch {
            let path = ([field] + error.path.reversed()).joined(separator: ".")
            throw AMQPError(.invalidArgument, "\(path): \(error.reason)")
        }
    }

    /// Why a table cannot be encoded, and where: the keys and indices from the innermost out.
    struct EncodingFailure: Error {
        var path: [String] = []
        let reason: String
    }

    fileprivate func encodedSize(depth: Int) throws(EncodingFailure) -> Int {
        guard depth <= Self.maximumDepth else {
            throw EncodingFailure(reason: "tables and arrays nest deeper than \(Self.maximumDepth) levels")
        }
        var size = 4
        for (key, value) in entries {
            let keyBytes = key.utf8.count
            do throws(EncodingFailure) {
                guard keyBytes <= 255 else {
                    throw EncodingFailure(reason: "the key is \(keyBytes) bytes of UTF-8, over the 255 a key holds")
                }
                size += 1 + keyBytes + (try value.encodedSize(depth: depth))
            } catch {
                var failure = error
                failure.path.append(keyBytes > 40 ? String(key.prefix(40)) + "…" : key)
                throw failure
            }
        }
        return size
    }
}

extension AMQPFieldValue {
    /// The value's size with its type letter, as librabbitmq 0.11 encodes it; `depth` is that of
    /// the table or array holding it.
    fileprivate func encodedSize(depth: Int) throws(AMQPTable.EncodingFailure) -> Int {
        switch self {
        case .void: return 1
        case .bool, .int8, .uint8: return 2
        case .int16, .uint16: return 3
        case .int32, .uint32, .float: return 5
        case .int64, .uint64, .double, .timestamp: return 9
        case .decimal: return 6
        case .string(let value): return 5 + value.utf8.count
        case .bytes(let value): return 5 + value.count
        case .table(let table): return 1 + (try table.encodedSize(depth: depth + 1))
        case .array(let values):
            guard depth + 1 <= AMQPTable.maximumDepth else {
                throw AMQPTable.EncodingFailure(
                    reason: "tables and arrays nest deeper than \(AMQPTable.maximumDepth) levels")
            }
            var size = 5
            for (index, value) in values.enumerated() {
                do throws(AMQPTable.EncodingFailure) {
                    size += try value.encodedSize(depth: depth + 1)
                } catch {
                    var failure = error
                    failure.path.append("[\(index)]")
                    throw failure
                }
            }
            return size
        }
    }
}
