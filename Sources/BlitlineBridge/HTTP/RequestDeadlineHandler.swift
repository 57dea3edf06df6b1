import NIOCore
import NIOHTTP1

/// Carries out ``RequestDeadlines`` on one HTTP/1 connection: sits after the request decoder,
/// watches request heads and ends and the answers (each write is one whole answer, see
/// ``HTTPConnectionHandler``), and closes the connection when its client is too slow.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var deadlines: RequestDeadlines
    /// When the connection is cut, moved twice per request; none while the client owes nothing.
    private let cutOff = LoopDeadline()
    private var started = false

    init(deadlines: RequestDeadlines) {
        self.deadlines = deadlines
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cutOff.stop()
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cutOff.stop()
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
        perform(deadlines.answerWritten(), context)
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
            cutOff.clear()
        case .arm(let delay, _):
            cutOff.set(.now() + TimeAmount(delay), on: context.eventLoop) { context.close(promise: nil) }
        }
    }
}
