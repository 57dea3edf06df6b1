import NIOCore
import NIOPosix

/// A task executor that runs its jobs on one NIO event loop.
///
/// Tasks that prefer it (`withTaskExecutorPreference`, and their child tasks) run on the thread
/// that also reads and writes their sockets, when those are on the same loop: a server's
/// connection handlers then read a request, handle it and write the answer without handing each
/// step to the global pool and back (each hand-over is a wake-up of another thread).
public final class EventLoopExecutor: TaskExecutor, Sendable {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
