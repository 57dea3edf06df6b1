import AsyncSupport
import Hummingbird
import NIOCore

extension HTTPListener {
    /// Answers one postback and logs its status and duration at debug (never its token or body).
    func postback(_ request: Request, context: Context, token: String) async -> Response {
        let started = ContinuousClock.now
        let response = await answerPostback(request, context: context, token: token[...], receiver: receiver)
        logger.debug(
            "postback answered",
            metadata: [
                "http.status": "\(response.status.code)",
                "duration_ms": "\((ContinuousClock.now - started) / .milliseconds(1))",
            ]
        )
        return response
    }

    /// The token first: a refused one is answered before a byte of the body is read, and the
    /// connection closes. Then the allowances (postbacks in hand, body bytes held), the body, and
    /// the receiver's handling, raced against what is left of ``Limits/postbackDeadline``.
    private func answerPostback<Receiver: PostbackReceiving>(
        _ request: Request, context: Context, token: Substring, receiver: Receiver
    ) async -> Response {
        let headArrived = ContinuousClock.now
        let verified: Receiver.VerifiedToken
        switch receiver.verify(token: token) {
        case .refused(let reply):
            return closing(context, Self.reply(reply))
        case .verified(let token):
            verified = token
        }
        let declaredLength = request.headers[.contentLength].flatMap { Int($0) }
        if let declaredLength, declaredLength > limits.maxPostbackBytes {
            return tooLarge(context)
        }
        guard pendingPostbacks.take(1) else {
            onShed(.overloaded)
            return closing(context, Self.text(.serviceUnavailable, "too many postbacks in hand; retry later"))
        }
        var held = 0
        let bufferedBytes = self.bufferedBytes
        let pendingPostbacks = self.pendingPostbacks
        let release: @Sendable (Int) -> Void = { held in
            bufferedBytes.giveBack(held)
            pendingPostbacks.giveBack(1)
        }
        let body: [UInt8]
        switch await readBody(request, declaredLength: declaredLength, held: &held) {
        case .read(let bytes):
            body = bytes
        case .refused(let response):
            release(held)
            if response.status == .serviceUnavailable { onShed(.overloaded) }
            return closing(context, response)
        }

        let left = limits.postbackDeadline - (ContinuousClock.now - headArrived)
        guard left > .zero else {
            release(held)
            onShed(.timedOut)
            return Self.text(.serviceUnavailable, "the postback could not be handled in time; retry")
        }
        let contentType = request.headers[.contentType]
        let reply = await DeadlineRace.value(within: left, fallback: nil as PostbackReply?, on: EventLoopExecutor(context.channel.eventLoop)) { [held] in
            defer { release(held) }
            return await receiver.receivePostback(verified, body: body, contentType: contentType)
        }
        guard let reply else {
            onShed(.timedOut)
            return Self.text(.serviceUnavailable, "the postback could not be handled in time; retry")
        }
        return Self.reply(reply)
    }

    private enum BodyRead {
        case read([UInt8])
        case refused(Response)
    }

    /// Reads the body, taking from ``bufferedBytes`` as it goes (the declared length at once);
    /// `held` is what it took, to be given back whatever happens.
    private func readBody(_ request: Request, declaredLength: Int?, held: inout Int) async -> BodyRead {
        let busy = Self.text(.serviceUnavailable, "too many postback bytes in hand; retry later")
        if let declaredLength {
            guard bufferedBytes.take(declaredLength) else { return .refused(busy) }
            held = declaredLength
        }
        var body: [UInt8] = []
        body.reserveCapacity(held)
        do {
            for try await buffer in request.body {
                let count = body.count + buffer.readableBytes
                guard count <= limits.maxPostbackBytes else { return .refused(tooLargeResponse) }
                if count > held {
                    guard bufferedBytes.take(count - held) else { return .refused(busy) }
                    held = count
                }
                body.append(contentsOf: buffer.readableBytesView)
            }
        } catch {
            return .refused(Self.text(.badRequest, "the body could not be read"))
        }
        return .read(body)
    }

    /// The receiver's reply as an answer; a status outside 200…599 is a 500.
    private static func reply(_ reply: PostbackReply) -> Response {
        guard (200...599).contains(reply.status) else {
            return text(.internalServerError, "the postback could not be handled")
        }
        return text(HTTPResponse.Status(code: reply.status), reply.message)
    }

    /// `response` with `Connection: close`, and the connection closes once it is written, so that
    /// the rest of the body is never read.
    private func closing(_ context: Context, _ response: Response) -> Response {
        context.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        var response = response
        response.headers[.connection] = "close"
        return response
    }

    /// 413, and the connection closes once it is written.
    private func tooLarge(_ context: Context) -> Response {
        closing(context, tooLargeResponse)
    }

    private var tooLargeResponse: Response {
        Self.text(.contentTooLarge, "the postback is larger than \(limits.maxPostbackBytes) bytes")
    }
}
