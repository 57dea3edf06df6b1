import NIOCore
import NIOHTTP1

/// Carries out ``RequestDeadlines`` on one HTTP/1 connection: sits after the HTTP codec, watches
/// request heads, ends and answers, and closes the connection when its client is too slow.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var deadlines: RequestDeadlines
    /// When the connection is cut; `nil` while the client owes nothing.
    private var cutAt: NIODeadline?
    /// The one timer, and when it fires. Deadlines move twice per request; the timer is not
    /// moved with them: it fires at most once per `headerTimeout` or so, and then either cuts the
    /// connection or is set again for the deadline now in force.
    private var timer: (scheduled: Scheduled<Void>, at: NIODeadline)?
    private var started = false

    init(deadlines: RequestDeadlines) {
        self.deadlines = deadlines
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimer()
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimer()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: perform(deadlines.headReceived(), context)
        case .body: break
        case .end: perform(deadlines.bodyEnded(), context)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            perform(deadlines.answerWritten(), context)
        }
        context.write(data, promise: promise)
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        perform(deadlines.connectionOpened(), context)
    }

    private func perform(_ action: RequestDeadlines.Action, _ context: ChannelHandlerContext) {
        switch action {
        case .keep:
            return
        case .disarm:
            cutAt = nil
        case .arm(let delay, _):
            let due = NIODeadline.now() + TimeAmount(delay)
            cutAt = due
            // A timer due sooner fires first and sets itself again for `due`.
            if timer.map({ $0.at > due }) ?? true { setTimer(at: due, context) }
        }
    }

    private func setTimer(at due: NIODeadline, _ context: ChannelHandlerContext) {
        timer?.scheduled.cancel()
        let scheduled = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { self.timerFired(context) }
        timer = (scheduled, due)
    }

    private func timerFired(_ context: ChannelHandlerContext) {
        timer = nil
        guard let cutAt else { return }
        if cutAt <= .now() {
            context.close(promise: nil)
        } else {
            setTimer(at: cutAt, context)
        }
    }

    private func stopTimer() {
        timer?.scheduled.cancel()
        timer = nil
        cutAt = nil
    }
}
