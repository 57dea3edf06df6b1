import NIOCore

/// Sits on the listener's server socket and keeps the connections it has accepted: lets no more
/// than `maxConnections` be open at once (past it the socket is not read, so new connections wait
/// in the kernel's accept queue until one closes), quiesces them on a graceful shutdown and cuts
/// them when told to.
///
/// Quiescing, each connection is sent `ChannelShouldQuiesceEvent`, on which its
/// ``HTTPConnectionHandler`` closes it after the answer in hand, or at once when idle. The gate outlives
/// the server socket it closes: it is called on the socket's event loop, not through its pipeline.
final class ConnectionGate: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    private let maxConnections: Int
    private var open: [ObjectIdentifier: any Channel] = [:]
    private var context: ChannelHandlerContext?
    private var socketClosed = false
    /// A read held back while every connection is taken.
    private var readWaiting = false
    /// Set by the first ``quiesce(drained:)``; completed once, when the last connection has closed.
    private var drained: EventLoopPromise<Void>?
    private var isDrained = false

    init(maxConnections: Int) {
        self.maxConnections = maxConnections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelInactive(context: ChannelHandlerContext) {
        socketClosed = true
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let connection = unwrapInboundIn(data)
        let id = ObjectIdentifier(connection)
        open[id] = connection
        let gate = NIOLoopBound(self, eventLoop: context.eventLoop)
        connection.closeFuture.hop(to: context.eventLoop).whenComplete { _ in gate.value.closed(id) }
        context.fireChannelRead(data)
        // After the accept handler has had it, so that the event follows its pipeline's set-up.
        if drained != nil { Self.quiesce(connection) }
    }

    func read(context: ChannelHandlerContext) {
        guard open.count < maxConnections else {
            readWaiting = true
            return
        }
        context.read()
    }

    /// Closes the server socket and asks each connection to close once the answer in hand is
    /// written; `promise` is completed when the last one has closed. Calls after the first (a
    /// cancellation after the graceful shutdown, say) change nothing.
    func quiesce(drained promise: EventLoopPromise<Void>) {
        guard drained == nil else { return }
        drained = promise
        context?.channel.close(promise: nil)
        open.values.forEach(Self.quiesce)
        completeDrainIfEmpty()
    }

    /// Closes every connection still open.
    func cutAll() {
        open.values.forEach { $0.close(promise: nil) }
    }

    private func closed(_ id: ObjectIdentifier) {
        open[id] = nil
        completeDrainIfEmpty()
        if readWaiting, open.count < maxConnections, drained == nil, !socketClosed {
            readWaiting = false
            context?.read()
        }
    }

    private func completeDrainIfEmpty() {
        guard open.isEmpty, !isDrained, let drained else { return }
        isDrained = true
        drained.succeed()
    }

    private static func quiesce(_ connection: any Channel) {
        connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }
}
