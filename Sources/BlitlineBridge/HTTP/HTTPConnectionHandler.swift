import AsyncSupport
import NIOCore
import NIOHTTP1

/// One connection of the ``HTTPListener``, the only handler on it: reads its requests with an
/// ``HTTPRequestParser``, keeps its ``RequestDeadlines`` and writes each answer itself, status
/// line, headers and body in one buffer. A request goes from its bytes to its answer without
/// leaving the connection's event loop, except for a verified postback's handling, which runs in
/// one task that prefers the loop too. SwiftNIO's HTTP/1 decoder, response encoder, pipelining
/// and error handlers cost each request several times what this does (deploy/BENCHMARKS.md, "An
/// answer written in one buffer" and "A request parser of the listener's own").
///
/// One request at a time: the bytes of requests a client sends ahead wait unread while a
/// postback is in hand, and once some have come the socket is not read until the answer in hand
/// is written, so what one readable event brings (SwiftNIO reads up to four buffers of at most 64
/// KiB) is all a client can make it hold. A request the parser cannot read is answered 400 (431
/// for a head too large, 501 for a transfer coding other than chunked, 505 for a version other
/// than HTTP/1.0 and 1.1) in its turn, and the connection closed. On a graceful shutdown the
/// connection closes once the answer in hand is written. The token of a postback is checked at its
/// head, before a byte of its body is read; a refusal is answered at once and the connection
/// closed.
final class HTTPConnectionHandler<Receiver: PostbackReceiving>: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let listener: HTTPListener
    private let receiver: Receiver
    private let servesPostbacks: Bool
    private var state = State.waitingForHead
    private var parser = HTTPRequestParser()
    /// What the client sent that is not parsed yet, such as requests sent ahead of the answer in
    /// hand; `nil` when that is nothing, so that an idle connection holds no buffer.
    private var unread: ByteBuffer?
    private var deadlines: RequestDeadlines
    /// When the connection is cut, moved twice per request; none while the client owes nothing.
    private let cutOff = LoopDeadline()
    private var deadlinesStarted = false
    /// The last answer is written or being written: nothing more is read or answered.
    private var closing = false
    /// Tells a postback's reply or deadline from those of the connection's earlier postbacks.
    private var postbacksHandled: UInt64 = 0
    /// The deadline of the postback in hand, after which it is answered 503.
    private let postbackDeadline = LoopDeadline()
    /// The task handling the postback in hand, cancelled at its deadline.
    private var worker: Task<Void, Never>?
    /// The client has closed its side; the postback in hand is the last.
    private var inputClosed = false
    /// A graceful shutdown asked for the connection to close after the answer in hand.
    private var quiescing = false
    /// The channel asked to read while a postback was in hand; it reads once it is answered.
    private var readHeld = false
    /// Where the postbacks' handling runs: this connection's event loop, made an executor once.
    private var executor: EventLoopExecutor?

    private enum State {
        case waitingForHead
        /// The answer was decided at the head (or the body was refused); the rest is dropped.
        case droppingBody
        case readingPostback(Postback)
        /// The receiver has postback `number`, its body read in full.
        case handling(number: UInt64, version: HTTPVersion, keepAlive: Bool, started: NIODeadline)
    }

    private struct Postback: Sendable {
        let token: Receiver.VerifiedToken
        let version: HTTPVersion
        let keepAlive: Bool
        let headArrived: NIODeadline
        let contentType: String?
        var body: [UInt8]
        /// Taken from the listener's buffered bytes (``HTTPListener/PostbackAllowances``), given
        /// back when the postback's handling ends.
        var held: Int
    }

    init(listener: HTTPListener, receiver: Receiver, servesPostbacks: Bool, deadlines: RequestDeadlines) {
        self.listener = listener
        self.receiver = receiver
        self.servesPostbacks = servesPostbacks
        self.deadlines = deadlines
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startDeadlines(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cutOff.stop()
    }

    func channelActive(context: ChannelHandlerContext) {
        startDeadlines(context)
        context.fireChannelActive()
    }

    // SwiftNIO calls a handler through its protocol, which reaches generic code; the entry
    // points jump to their specialization for the bridge's receiver instead, where the state is
    // copied without value witnesses.
    @_specialize(where Receiver == PostbackHandler)
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // After the last answer what comes is dropped, so a client cannot fill memory meanwhile.
        guard !closing else { return }
        var bytes = unwrapInboundIn(data)
        if unread == nil {
            unread = bytes
        } else {
            unread!.writeBuffer(&bytes)
        }
        readRequests(context)
    }

    /// Holds reading while a postback is in hand and a request sent ahead already waits: the rest
    /// of what a client sends ahead waits in its socket, not in memory. The socket stays watched
    /// until then, since holding a read costs SwiftNIO two `epoll_ctl` calls (one to stop watching,
    /// one to watch again) and a client that waits for its answer sends nothing meanwhile.
    @_specialize(where Receiver == PostbackHandler)
    func read(context: ChannelHandlerContext) {
        if isHandling, unread != nil {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// Takes the requests that have come in full, in turn, until a postback is in hand.
    private func readRequests(_ context: ChannelHandlerContext) {
        defer { if unread?.readableBytes == 0 { unread = nil } }
        while !isHandling, !closing, unread != nil {
            let part: HTTPRequestParser.Part
            do {
                guard let next = try parser.next(from: &unread!) else { return }
                part = next
            } catch {
                if case .droppingBody = state {
                    // Answered at its head: a second answer would be taken for the next request's.
                    return closeAfterWrites(nil, context)
                }
                let failure = error as? HTTPRequestParser.Failure ?? .malformed("request")
                let answer = HTTPAnswer.text(failure.status, failure.reason)
                return self.answer(answer, version: .http1_1, keepAlive: false, context)
            }
            take(part, context)
        }
    }

    private func take(_ part: HTTPRequestParser.Part, _ context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            perform(deadlines.headReceived(), context)
            received(head, context)
        case .body(let buffer):
            guard case .readingPostback(var postback) = state else { return }
            state = .droppingBody  // the array stays uniquely referenced while it grows
            if let refusal = append(buffer, to: &postback) {
                listener.allowances.release(postbackHolding: postback.held)
                if refusal.status == .serviceUnavailable { listener.onShed(.overloaded) }
                answerPostback(refusal, version: postback.version, keepAlive: false, started: postback.headArrived, context)
            } else {
                state = .readingPostback(postback)
            }
        case .end:
            perform(deadlines.bodyEnded(), context)
            switch state {
            case .readingPostback(let postback): handle(postback, context)
            case .droppingBody: state = .waitingForHead
            case .waitingForHead, .handling: break
            }
        }
    }

    /// A client that closes its side (the connection is allowed to half-close) sends nothing
    /// more: an idle connection, or one whose body will never end, is closed at once rather than
    /// held until `LISTEN_HEADER_TIMEOUT`; a postback in hand is answered first, and the requests
    /// sent behind it after it.
    ///
    /// On a graceful shutdown (``ConnectionGate``) the connection closes once the answer owed is
    /// written, at once when none is.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent {
            if isHandling {
                inputClosed = true
            } else {
                context.close(promise: nil)
            }
        } else if event is ChannelShouldQuiesceEvent {
            switch state {
            case .readingPostback, .handling: quiescing = true
            case .waitingForHead, .droppingBody: context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A client that leaves in the middle of its body gives back what it held.
        if case .readingPostback(let postback) = state {
            listener.allowances.release(postbackHolding: postback.held)
            state = .droppingBody
        }
        // A timer left from an answered postback would hold the connection until it fires; one
        // for the postback in hand still cancels its handling at the deadline.
        if !isHandling { postbackDeadline.stop() }
        cutOff.stop()
        context.fireChannelInactive()
    }

    // MARK: Routes

    private func received(_ head: HTTPRequestParser.Head, _ context: ChannelHandlerContext) {
        state = .droppingBody
        if servesPostbacks, let prefix = listener.postbackPathPrefix, let token = Self.token(head.path[...], prefix: prefix) {
            guard head.method == .post else { return answer(HTTPAnswer.methodNotAllowed, to: head, context) }
            return receivedPostback(head, token: token, context)
        }
        let answerForGET: HTTPAnswer
        switch head.path {
        case "/healthz":
            answerForGET = .text(.ok, "ok")
        case "/readyz":
            answerForGET = listener.isReady()
                ? .text(.ok, "ready")
                : .text(.serviceUnavailable, "not ready: the broker is not connected or the topology not declared")
        case "/metrics":
            answerForGET = HTTPAnswer(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: listener.metricsText())
        default:
            return answer(.text(.notFound, "not found"), to: head, context)
        }
        // HEAD as GET, the body left out.
        let isGET = head.method == .get || head.method == .head
        answer(isGET ? answerForGET : HTTPAnswer.methodNotAllowed, to: head, context)
    }

    /// The token of `{prefix}/postback/{token}`, empty for `{prefix}/postback[/]`; `nil` for any
    /// other path.
    static func token(_ path: Substring, prefix: String) -> Substring? {
        let route = "/postback".utf8
        var rest = path.utf8
        guard rest.starts(with: prefix.utf8) else { return nil }
        rest.removeFirst(prefix.utf8.count)
        guard rest.starts(with: route) else { return nil }
        rest.removeFirst(route.count)
        if rest.isEmpty { return Substring(rest) }
        guard rest.removeFirst() == UInt8(ascii: "/"), !rest.contains(UInt8(ascii: "/")) else { return nil }
        return Substring(rest)
    }

    /// The token first, then the declared length and the allowances; the body is read only
    /// after all of them pass. A client that waits for a `100 Continue` before it sends the body
    /// (`Expect: 100-continue`, as curl does for larger bodies) is sent one then, and is otherwise
    /// answered without it.
    private func receivedPostback(_ head: HTTPRequestParser.Head, token: Substring, _ context: ChannelHandlerContext) {
        let headArrived = NIODeadline.now()
        let verified: Receiver.VerifiedToken
        let refuse = { (answer: HTTPAnswer) in
            self.answerPostback(answer, version: head.version, keepAlive: false, started: headArrived, context)
        }
        switch receiver.verify(token: token) {
        case .refused(let reply):
            return refuse(HTTPAnswer(reply))
        case .verified(let token):
            verified = token
        }
        let limits = listener.limits
        let declaredLength = head.contentLength
        if let declaredLength, declaredLength > limits.maxPostbackBytes {
            return refuse(tooLarge)
        }
        guard listener.allowances.pendingPostbacks.take(1) else {
            listener.onShed(.overloaded)
            return refuse(.text(.serviceUnavailable, "too many postbacks in hand; retry later"))
        }
        if let declaredLength, !listener.allowances.bufferedBytes.take(declaredLength) {
            listener.allowances.release(postbackHolding: 0)
            listener.onShed(.overloaded)
            return refuse(busy)
        }
        var body: [UInt8] = []
        body.reserveCapacity(declaredLength ?? 0)
        state = .readingPostback(Postback(
            token: verified, version: head.version, keepAlive: head.keepAlive, headArrived: headArrived,
            contentType: head.contentType, body: body, held: declaredLength ?? 0))
        if head.expectsContinue, declaredLength != 0, (unread?.readableBytes ?? 0) == 0 {
            let interim = context.channel.allocator.buffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")
            context.writeAndFlush(wrapOutboundOut(interim), promise: nil)
        }
    }

    /// Adds a part of the body, taking from the listener's buffered bytes past what is held;
    /// the refusal when the body is too large or the bytes are not there.
    private func append(_ buffer: ByteBuffer, to postback: inout Postback) -> HTTPAnswer? {
        let count = postback.body.count + buffer.readableBytes
        guard count <= listener.limits.maxPostbackBytes else { return tooLarge }
        if count > postback.held {
            guard listener.allowances.bufferedBytes.take(count - postback.held) else { return busy }
            postback.held = count
        }
        postback.body.append(contentsOf: buffer.readableBytesView)
        return nil
    }

    /// The receiver's handling, raced against what is left of the postback deadline: the first
    /// of its reply and the deadline's 503 is the answer. The allowances are given back when the
    /// handling really ends, which may be after the 503.
    private func handle(_ postback: Postback, _ context: ChannelHandlerContext) {
        let deadline = postback.headArrived + TimeAmount(listener.limits.postbackDeadline)
        postbacksHandled += 1
        let number = postbacksHandled
        state = .handling(number: number, version: postback.version, keepAlive: postback.keepAlive, started: postback.headArrived)
        guard deadline > .now() else {
            listener.allowances.release(postbackHolding: postback.held)
            return timedOut(number, context)
        }
        let loop = context.eventLoop
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: loop)
        let receiver = self.receiver
        let allowances = listener.allowances
        let executor = self.executor ?? EventLoopExecutor(loop)
        self.executor = executor
        worker = Task(executorPreference: executor) { [postback] in
            let reply = await receiver.receivePostback(postback.token, body: postback.body, contentType: postback.contentType)
            allowances.release(postbackHolding: postback.held)
            let answer: @Sendable () -> Void = {
                bound.value.handler.handled(number, HTTPAnswer(reply), bound.value.context)
            }
            if loop.inEventLoop { answer() } else { loop.execute(answer) }
        }
        postbackDeadline.set(deadline, on: loop) { self.timedOut(number, context) }
    }

    private func handled(_ number: UInt64, _ reply: HTTPAnswer, _ context: ChannelHandlerContext) {
        guard case .handling(number, let version, let keepAlive, let started) = state else { return }
        postbackDeadline.clear()
        worker = nil
        state = .waitingForHead
        answerPostback(reply, version: version, keepAlive: keepAlive && !lastRequest, started: started, context)
        resume(context)
    }

    private func timedOut(_ number: UInt64, _ context: ChannelHandlerContext) {
        guard case .handling(number, let version, let keepAlive, let started) = state else { return }
        worker?.cancel()
        worker = nil
        state = .waitingForHead
        listener.onShed(.timedOut)
        let answer = HTTPAnswer.text(.serviceUnavailable, "the postback could not be handled in time; retry")
        answerPostback(answer, version: version, keepAlive: keepAlive && !lastRequest, started: started, context)
        resume(context)
    }

    private var isHandling: Bool {
        if case .handling = state { true } else { false }
    }

    /// The client has closed its side and sent nothing after the request in hand.
    private var lastRequest: Bool { inputClosed && unread == nil }

    /// After a postback's answer: the requests that waited for it, in turn (another postback
    /// among them waits again), then the read that was held; once a client that closed its side
    /// has all its answers, the connection closes.
    private func resume(_ context: ChannelHandlerContext) {
        readRequests(context)
        if inputClosed, !isHandling, !closing { return closeAfterWrites(nil, context) }
        if readHeld, !isHandling {
            readHeld = false
            context.read()
        }
    }

    /// Answers a postback and logs its status and duration at debug (never its token or body).
    private func answerPostback(
        _ answer: HTTPAnswer, version: HTTPVersion, keepAlive: Bool, started: NIODeadline,
        _ context: ChannelHandlerContext
    ) {
        self.answer(answer, version: version, keepAlive: keepAlive, context)
        listener.logger.debug(
            "postback answered",
            metadata: [
                "http.status": "\(answer.status.code)",
                "duration_ms": "\(Double((NIODeadline.now() - started).nanoseconds) / 1_000_000)",
            ])
    }

    // MARK: Answers

    private var tooLarge: HTTPAnswer {
        .text(.payloadTooLarge, "the postback is larger than \(listener.limits.maxPostbackBytes) bytes")
    }

    private var busy: HTTPAnswer { .text(.serviceUnavailable, "too many postback bytes in hand; retry later") }

    private func answer(_ answer: HTTPAnswer, to head: HTTPRequestParser.Head, _ context: ChannelHandlerContext) {
        self.answer(answer, version: head.version, keepAlive: head.keepAlive, withBody: head.method != .head, context)
    }

    /// Writes `answer` as one buffer; without `keepAlive` (or once the listener is shutting
    /// down) it carries `Connection: close` and the connection closes once it is written, unread
    /// bytes and all. An HTTP/1.0 client, whose connections close unless both sides say
    /// otherwise, is told `Connection: keep-alive` when it asked.
    private func answer(
        _ answer: HTTPAnswer, version: HTTPVersion, keepAlive: Bool, withBody: Bool = true, _ context: ChannelHandlerContext
    ) {
        let keepAlive = keepAlive && !quiescing
        let body = answer.body.utf8
        var buffer = context.channel.allocator.buffer(capacity: 128 + answer.contentType.utf8.count + body.count)
        buffer.writeString("HTTP/\(version.major).\(version.minor) \(answer.status.code) \(answer.status.reasonPhrase)\r\n")
        buffer.writeString("content-type: \(answer.contentType)\r\ncontent-length: \(body.count)\r\n")
        if !keepAlive {
            buffer.writeString("connection: close\r\n")
        } else if version == .http1_0 {
            buffer.writeString("connection: keep-alive\r\n")
        }
        buffer.writeString("\r\n")
        if withBody { buffer.writeString(answer.body) }
        perform(deadlines.answerWritten(), context)
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        } else {
            closeAfterWrites(buffer, context)
        }
    }

    /// Writes `last` (if any), then closes the connection once everything is written, unread
    /// bytes and all.
    private func closeAfterWrites(_ last: ByteBuffer?, _ context: ChannelHandlerContext) {
        closing = true
        let last = last ?? context.channel.allocator.buffer(capacity: 0)
        context.writeAndFlush(wrapOutboundOut(last)).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }

    // MARK: Deadlines

    private func startDeadlines(_ context: ChannelHandlerContext) {
        guard !deadlinesStarted else { return }
        deadlinesStarted = true
        perform(deadlines.connectionOpened(), context)
    }

    private func perform(_ action: RequestDeadlines.Action, _ context: ChannelHandlerContext) {
        switch action {
        case .keep:
            return
        case .disarm:
            cutOff.clear()
        case .arm(let delay, _):
            cutOff.set(.now() + TimeAmount(delay), on: context.eventLoop) { context.close(promise: nil) }
        }
    }
}

/// A status and a one-line `text/plain` body (or the metrics).
struct HTTPAnswer {
    var status: HTTPResponseStatus
    var contentType = "text/plain; charset=utf-8"
    var body: String

    static func text(_ status: HTTPResponseStatus, _ body: String) -> HTTPAnswer {
        HTTPAnswer(status: status, body: body)
    }

    static let methodNotAllowed = HTTPAnswer.text(.methodNotAllowed, "method not allowed")

    /// The receiver's reply; a status outside 200…599 is a 500.
    init(_ reply: PostbackReply) {
        self = (200...599).contains(reply.status)
            ? .text(HTTPResponseStatus(statusCode: reply.status), reply.message)
            : .text(.internalServerError, "the postback could not be handled")
    }

    init(status: HTTPResponseStatus, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}
