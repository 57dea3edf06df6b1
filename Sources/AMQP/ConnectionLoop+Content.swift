import CRabbitMQ

/// Reading a message's content header and body frames one at a time, so that a body over a
/// consumer's limit is dropped frame by frame instead of being allocated whole (as
/// `amqp_read_message` would). Owner thread.
extension ConnectionLoop {
    /// A message's properties and body, copied out of library memory.
    struct Content {
        var properties: AMQPProperties
        /// The size the content header declared.
        var bodySize: UInt64
        /// Empty when discarded.
        var body: [UInt8]
        var isBodyDiscarded: Bool
    }

    /// Reads the content header and body frames that follow a `basic.deliver` or `basic.return`
    /// on channel `number`. A body declared larger than `maxBodyBytes` is read and dropped.
    /// Returns nil, with the connection closing, if the frames cannot be read or are not what
    /// the protocol says must come.
    func readContent(on number: UInt16, maxBodyBytes: Int?, reading what: String) -> Content? {
        guard let header = nextFrame(on: number, reading: what) else { return nil }
        guard header.frame_type == UInt8(AMQP_FRAME_HEADER), let decoded = header.payload.properties.decoded else {
            closeConnection(AMQPError(.protocolError, "expected a content header while reading \(what)"))
            return nil
        }
        // Copied before the channel's memory is released below.
        let properties = AMQPProperties(decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
        let bodySize = header.payload.properties.body_size
        let keep = bodySize <= maxBodyBytes.map { UInt64(max($0, 0)) } ?? .max
        var body: [UInt8] = []
        if keep { body.reserveCapacity(Int(min(bodySize, 16 << 20))) }
        releaseFrames(on: number)

        var received: UInt64 = 0
        while received < bodySize {
            guard let frame = nextFrame(on: number, reading: what) else { return nil }
            let fragment = frame.payload.body_fragment
            guard frame.frame_type == UInt8(AMQP_FRAME_BODY), UInt64(fragment.len) <= bodySize - received else {
                closeConnection(
                    AMQPError(.protocolError, "the body frames do not match the declared size while reading \(what)"))
                return nil
            }
            received += UInt64(fragment.len)
            if keep, fragment.len > 0, let bytes = fragment.bytes {
                body.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: fragment.len))
            }
            releaseFrames(on: number)
        }
        return Content(properties: properties, bodySize: bodySize, body: body, isBodyDiscarded: !keep)
    }

    /// The next frame on channel `number`: one set aside earlier, else the next from the library.
    /// Frames of other channels read meanwhile are set aside for `drainFrames`, in order;
    /// heartbeat frames are dropped.
    private func nextFrame(on number: UInt16, reading what: String) -> amqp_frame_t? {
        if let index = setAsideFrames.firstIndex(where: { $0.channel == number }) {
            return setAsideFrames.remove(at: index)
        }
        while true {
            var frame = amqp_frame_t()
            let status = amqp_simple_wait_frame(state, &frame)
            guard status == AMQP_STATUS_OK.rawValue else {
                closeConnection(libraryError(status, while: "reading \(what)"))
                return nil
            }
            lastInbound = .now
            if frame.frame_type == UInt8(AMQP_FRAME_HEARTBEAT) { continue }
            if frame.channel == number { return frame }
            setAsideFrames.append(frame)
        }
    }

    /// Frees the library memory of the frames read on channel `number`, which this reader has
    /// copied out; not while frames of that channel are still set aside, as they live there too.
    private func releaseFrames(on number: UInt16) {
        guard !setAsideFrames.contains(where: { $0.channel == number }) else { return }
        amqp_maybe_release_buffers_on_channel(state, number)
    }
}
