import AsyncSupport
import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1 connections, each handled on the event loop that reads and writes its
/// socket: the connection's task prefers that loop as its task executor, so a request goes from its
/// bytes to the handler and its answer back to the socket on one thread, instead of a hop to
/// Swift's global pool and back for each part. Connections still spread over all the loops.
struct HTTP1OnItsEventLoop: ServerChildChannel {
    let http1: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        http1.setup(channel: channel, logger: logger)
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopExecutor(value.channel.eventLoop)) {
            await http1.handle(value: value, logger: logger)
        }
    }
}
