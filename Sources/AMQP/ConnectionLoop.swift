import CRabbitMQ
import Foundation
import Logging
import Synchronization

/// The one thread that owns a librabbitmq connection.
///
/// librabbitmq is synchronous and does nothing in the background: heartbeats, confirms, returns and
/// broker-initiated closes are handled only while a thread is inside a library call, and a
/// connection must never be used by two threads at once. So every connection gets a dedicated
/// thread that stays in the library: Swift tasks post `Command`s to its mailbox and are answered
/// through continuations; deliveries leave through `AsyncThrowingStream`s.
///
/// The decisions about the connection's life, its commands and blocked publishing are made by
/// `State`, a plain value; this class carries them out. The owner thread and its watchdog keep
/// the loop alive until the connection is torn down, and nothing of theirs holds the
/// `AMQPConnection`: that one asks for the close when the application lets go of it.
final class ConnectionLoop: @unchecked Sendable {
    /// Work for the owner thread. `fail` answers the caller if the connection closes first.
    struct Command: Sendable {
        /// Set for publishes, which wait while the broker blocks publishing.
        var publishID: UInt64? = nil
        /// Set for plain acks, which are gathered and sent together (`sendGatheredAcks`). Every
        /// other command but a publish sends the acks gathered before it first, so that they keep
        /// their place before a nack, a channel's close or the connection's.
        var isAck = false
        let run: @Sendable (ConnectionLoop) -> Void
        let fail: @Sendable (AMQPError) -> Void

        var isPublish: Bool { publishID != nil }
    }

    let configuration: AMQPConnection.Configuration
    let logger: Logger
    /// The lifecycle, the posted commands, the blocked state and who waits on them: one `State`
    /// for every thread, changed only through its events.
    private let shared = Mutex(State())
    /// A pipe whose write end wakes the owner thread from `poll`.
    private let wakeFDs: (read: Int32, write: Int32)
    /// When the owner thread entered a library call that can block without bound (0: not in one).
    private let blockingCallStartedAt = Atomic<UInt64>(0)
    private let socketFD = Atomic<Int32>(-1)
    private let lastPublishID = Atomic<UInt64>(0)
    /// The owner thread's `pthread_self()` once it runs (0 before), for `assertOnOwnerThread`.
    private let ownerThread = Atomic<pthread_t>(0)

    // Owner thread only: debug builds assert it in each accessor (at the end of this file).
    private var _state: amqp_connection_state_t?
    private var _channels: [UInt16: ChannelState] = [:]
    private var _nextChannelID: UInt64 = 1
    private let _arena = CArena()
    private var _lastInbound = ContinuousClock.now
    private var _setAsideFrames: [amqp_frame_t] = []
    private var _closedWithFramesQueued: Set<UInt16> = []
    private var _heartbeat: Duration = .zero
    private var _frameMax = 131_072
    private var _sinksToFlush: [ConsumerSink] = []
    private var _deliveriesInPass = 0
    private var _deliveriesInLastPass = 0
    private var _isCorked = false
    /// Until when publishes are sent at once, and how many publishes a gathering finds on
    /// average (`gatherPublishes`).
    private var _gatheringRestsUntil = ContinuousClock.now
    private var _gatheredOnAverage = 1.0
    /// How long a steady trickle of deliveries is let gather before it is read (`letDeliveriesGather`).
    private static let gatheringDelay: useconds_t = 100
    /// A pass with this many publishes sends them without gathering more.
    static let gatheredPublishes = 64
    /// How long publishes are sent at once once gathering finds too few (`gatherPublishes`).
    static let gatheringRest: Duration = .seconds(1)

    init(configuration: AMQPConnection.Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "cannot create a pipe")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        self.wakeFDs = (fds[0], fds[1])
    }

    deinit {
        close(wakeFDs.read)
        close(wakeFDs.write)
    }

    // MARK: Any thread

    /// Starts the owner thread, which opens the connection; returns once it is open.
    func start() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread { [self] in
                ownerThread.store(pthread_self(), ordering: .relaxed)
                Self.nameCurrentThread(configuration.threadName ?? "amqp \(configuration.port)")
                do {
                    try open()
                } catch {
                    // The caller learns this from the error it gets; nothing to log here.
                    finish(error as? AMQPError ?? AMQPError(.connectionFailed, "\(error)"), quietly: true)
                    continuation.resume(throwing: error)
                    return
                }
                shared.withLock { $0.opened() }
                continuation.resume()
                startWatchdog()
                runLoop()
            }
            thread.stackSize = Self.stackSize(frameMax: configuration.frameMax)
            thread.start()
        }
    }

    /// Stack for librabbitmq 0.11, which decodes nested field tables and arrays recursively with
    /// no depth limit (fixed upstream in 0.14, not in Debian's 0.11.0-1+deb12u3): measured on
    /// Debian's build, about 96 bytes of stack per level of arrays (5 bytes of frame each) and 112
    /// per level of tables (6 bytes each), so under 20 bytes of stack per byte of frame. 32 per byte
    /// leaves room; the pages are only touched by such a message. A frame_max of 0 (the broker's
    /// choice) is taken as RabbitMQ's largest default, 128 KiB.
    static func stackSize(frameMax: Int) -> Int {
        let frame = frameMax > 0 ? frameMax : 131_072
        return min(max(16 << 20, 32 * frame + (1 << 20)), 1 << 30)
    }

    /// A fresh id for a publish, so that a cancelled one can be found on the owner thread.
    func makePublishID() -> UInt64 {
        lastPublishID.add(1, ordering: .relaxed).newValue
    }

    /// Posts a command; fails it at once if the connection is already closed.
    func submit(_ command: Command) {
        switch shared.withLock({ $0.commandPosted(command) }) {
        case .none:
            break
        case .wakeOwner:
            var one: UInt8 = 1
            _ = write(wakeFDs.write, &one, 1)
        case .fail(let reason):
            command.fail(reason)
        }
    }

    /// Runs `body` on the owner thread and returns its result.
    func perform<T: Sendable>(
        _ body: @escaping @Sendable (ConnectionLoop) throws(AMQPError) -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit(
                Command(
                    run: { loop in continuation.resume(with: Result { () throws(AMQPError) in try body(loop) }) },
                    fail: { continuation.resume(throwing: $0) }))
        }
    }

    var closeReason: AMQPError? { shared.withLock { $0.closeReason } }
    var isBlocked: Bool { shared.withLock { $0.isBlocked } }

    /// Waits until the connection is closed and returns why. Cancelling the wait returns at once.
    func closed() async -> AMQPError {
        let id = shared.withLock { $0.makeID() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if let reason = shared.withLock({ $0.closeWaitStarted(id, continuation) }) {
                    continuation.resume(returning: reason)
                }
            }
        } onCancel: {
            shared.withLock { $0.closeWaitCancelled(id) }?.resume(returning: State.stoppedWaiting)
        }
    }

    /// Asks the owner thread to close the connection with `reason`, after the commands posted
    /// before.
    func requestClose(_ reason: AMQPError) {
        submit(Command(run: { $0.closeConnection(reason) }, fail: { _ in }))
    }

    /// Forgets a publish whose caller was cancelled while it waited for the broker to unblock
    /// publishing, so that it is never written and its body is freed now.
    func dropDeferredPublish(_ id: UInt64) {
        submit(Command(run: { loop in loop.shared.withLock { $0.publishCancelled(id) } }, fail: { _ in }))
    }

    /// Yields whether the broker blocks publishing, now and at every change, until the
    /// connection closes.
    func blockedChanges() -> AsyncStream<Bool> {
        let (stream, continuation) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingNewest(16))
        // Yielded under the lock, so that no change is yielded before the current state.
        let id = shared.withLock { shared -> Int? in
            switch shared.blockedWatchStarted(continuation) {
            case .watch(let id, let current):
                continuation.yield(current)
                return id
            case .finish:
                return nil
            }
        }
        guard let id else {
            continuation.yield(false)
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.shared.withLock { $0.blockedWatchEnded(id) }
        }
        return stream
    }

    // MARK: Owner thread

    /// Traps in debug builds unless called on the owner thread; compiled away in release builds.
    func assertOnOwnerThread(file: StaticString = #fileID, line: UInt = #line) {
        assert(
            pthread_equal(ownerThread.load(ordering: .relaxed), pthread_self()) != 0,
            "owner-thread-only state of an AMQP connection used from another thread", file: file, line: line)
    }

    private func runLoop() {
        assertOnOwnerThread()
        // TLS can hold decrypted records that poll() cannot see: wake often to read them.
        let base = Duration.milliseconds(configuration.tls == nil ? 200 : 10)
        let tick = heartbeat > .zero ? min(base, heartbeat / 4) : base
        // Worked out once: `Duration` arithmetic is 128-bit, and it showed in the thread's profile.
        let silenceLimit = heartbeat > .zero ? heartbeat * 2 + .seconds(1) : nil
        while closingReason == nil {
            var commands = shared.withLock { $0.releasedPublishes() + $0.takeCommands() }
            if shouldGatherPublishes(commands) { commands += gatherPublishes() }
            // Publishes and acks wait for nothing: those of one pass leave the socket together.
            if commands.count > 1 { setCorked(true) }
            for command in commands { execute(command) }
            sendGatheredAcks()
            setCorked(false)
            drainFrames()
            if !closedWithFramesQueued.isEmpty, framesQueued == 0 { closedWithFramesQueued.removeAll() }
            flushDeliveries()
            guard closingReason == nil, let state else { break }
            amqp_maybe_release_buffers(state)

            let idle =
                amqp_frames_enqueued(state) == 0 && amqp_data_in_buffer(state) == 0
                && shared.withLock { $0.ownerWillSleep() }
            waitForActivity(timeout: idle ? tick : .zero)
            if idle { shared.withLock { $0.ownerWoke() } }
            if let silenceLimit, ContinuousClock.now - lastInbound > silenceLimit {
                closeConnection(
                    AMQPError(.heartbeatTimeout, "no data from the broker for two heartbeat intervals"))
            }
        }
        finish(closingReason ?? AMQPError(.connectionClosed, "connection closed"))
    }

    private func execute(_ command: Command) {
        switch shared.withLock({ $0.commandTaken(command) }) {
        case .run:
            if !command.isAck, !command.isPublish {
                sendGatheredAcks()
                // A call that waits for the broker's answer must not leave its request held back.
                setCorked(false)
            }
            command.run(self)
        case .deferred: break
        case .fail(let reason): command.fail(reason)
        }
    }

    /// Waits on the socket and the wake-up pipe; any readable byte counts as life from the peer.
    private func waitForActivity(timeout: Duration) {
        guard let state else { return }
        var fds = [
            pollfd(fd: amqp_get_sockfd(state), events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeFDs.read, events: Int16(POLLIN), revents: 0),
        ]
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&fds, 2, milliseconds) > 0 else { return }
        if fds[0].revents != 0 {
            lastInbound = .now
            // Only after a real wait that the socket alone ended: a command runs without delay.
            if timeout > .zero, fds[1].revents == 0 { letDeliveriesGather() }
        }
        if fds[1].revents != 0 {
            var drain = (UInt64(0), UInt64(0))
            _ = withUnsafeMutableBytes(of: &drain) { read(wakeFDs.read, $0.baseAddress, $0.count) }
        }
    }

    /// Batches a steady trickle of deliveries. Woken by the socket after a pass that delivered
    /// only a few messages, the thread waits `gatheringDelay` (0.1 ms) for more to arrive before
    /// it reads, so that the consumer's task is woken once for many messages rather than for each.
    /// Measured here, that halves the client CPU per consumed message. After a pass with no
    /// deliveries (a publishing or idle connection) or with many (a backlog, already batched),
    /// it does not wait.
    private func letDeliveriesGather() {
        guard (1..<16).contains(deliveriesInLastPass) else { return }
        usleep(Self.gatheringDelay)
    }

    /// Whether the pass's few publishes should wait `publishGathering` for more: not while gathering
    /// rests, which it does for `gatheringRest` once the publishes it finds fall to fewer than one
    /// every other time on average (a lone publish, or callers publishing one after another,
    /// which gathering would only delay).
    private func shouldGatherPublishes(_ commands: [Command]) -> Bool {
        guard configuration.publishGathering > .zero, ContinuousClock.now >= gatheringRestsUntil else { return false }
        let publishes = commands.count { $0.isPublish }
        return publishes > 0 && publishes < Self.gatheredPublishes
    }

    /// Waits `publishGathering` and takes the commands posted meanwhile (posting them wakes no one:
    /// the thread is not waiting on its pipe).
    private func gatherPublishes() -> [Command] {
        usleep(useconds_t(configuration.publishGathering / .microseconds(1)))
        let more = shared.withLock { $0.takeCommands() }
        // A moving average of the publishes each gathering found, over about the last eight.
        gatheredOnAverage += (Double(more.count { $0.isPublish }) - gatheredOnAverage) / 8
        if gatheredOnAverage < 0.5 {
            gatheringRestsUntil = .now + Self.gatheringRest
            gatheredOnAverage = 1
        }
        return more
    }

    /// Holds the frames written while corked in the kernel, and sends what it holds when uncorked:
    /// the three frames of each of a pass's publishes, and its acks, leave in a few full TCP
    /// segments instead of one push each. Fewer segments cost this process and the broker less
    /// per message (measured with `bridge-bench`, deploy/BENCHMARKS.md). A failure to set it changes
    /// nothing but that.
    private func setCorked(_ corked: Bool) {
        guard corked != isCorked, let state else { return }
        if crmq_set_cork(amqp_get_sockfd(state), corked ? 1 : 0) == 0 { isCorked = corked }
    }

    /// Takes every frame that is ready without blocking and dispatches it.
    private func drainFrames() {
        guard let state else { return }
        var frame = amqp_frame_t()
        var immediately = timeval(tv_sec: 0, tv_usec: 0)
        while closingReason == nil {
            if !setAsideFrames.isEmpty {
                handle(setAsideFrames.removeFirst())
                continue
            }
            let status = amqp_simple_wait_frame_noblock(state, &frame, &immediately)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return }
            guard status == AMQP_STATUS_OK.rawValue else {
                closeConnection(libraryError(status, while: "reading from the broker"))
                return
            }
            lastInbound = .now
            handle(frame)
            // Stop before a read that would only find the socket empty; poll() tells when to read.
            if amqp_data_in_buffer(state) == 0, amqp_frames_enqueued(state) == 0, setAsideFrames.isEmpty { return }
        }
    }

    private func flushDeliveries() {
        deliveriesInLastPass = deliveriesInPass
        deliveriesInPass = 0
        for sink in sinksToFlush { sink.flush() }
        sinksToFlush.removeAll(keepingCapacity: true)
    }

    /// Tears the connection down and fails everything still waiting on it.
    private func finish(_ reason: AMQPError, quietly: Bool = false) {
        socketFD.store(-1, ordering: .relaxed)
        // Closed before any caller learns of the failure, so that the reason is visible to it.
        let teardown = shared.withLock { $0.tornDown(reason) }
        for watcher in teardown.blockedWatchers { watcher.finish() }
        flushDeliveries()
        if let state {
            // 0.11's destroy does not send connection.close; a close the broker started was
            // already answered with close-ok, and a dead socket has no one to tell.
            if reason == .closedByApplication {
                var timeout = timeval(tv_sec: 2, tv_usec: 0)
                amqp_set_rpc_timeout(state, &timeout)
                _ = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
            }
            setAsideFrames.removeAll()
            amqp_destroy_connection(state)
            self.state = nil
        }
        for channel in channels.values { channel.fail(reason) }
        channels.removeAll()
        for command in teardown.commandsToFail { command.fail(reason) }
        for waiter in teardown.closeWaiters { waiter.resume(returning: reason) }
        if reason != .closedByApplication, !quietly {
            logger.warning("AMQP connection closed", metadata: ["reason": "\(reason)"])
        }
    }

    func setBlocked(_ blocked: Bool, reason: String) {
        assertOnOwnerThread()
        // Yielded under the lock, so that a watcher starting meanwhile sees the changes in order.
        shared.withLock { shared in
            for watcher in shared.blockedChanged(blocked) { watcher.yield(blocked) }
        }
        logger.warning(
            blocked ? "broker blocked publishing" : "broker unblocked publishing",
            metadata: blocked ? ["reason": "\(reason)"] : [:])
    }

    /// Marks the connection as closing (the first reason stays); the loop tears it down before
    /// its next wait.
    func closeConnection(_ reason: AMQPError) {
        assertOnOwnerThread()
        shared.withLock { $0.closeRequested(reason) }
    }

    /// Why the connection is closing or closed; nil while it is open.
    private var closingReason: AMQPError? { shared.withLock { $0.closingReason } }

    /// Why the connection is closing, for calls that found it so.
    var closeReasonOrClosed: AMQPError { closingReason ?? AMQPError(.connectionClosed, "connection closed") }

    // MARK: Blocking calls and the watchdog

    /// Runs a library call that 0.11 may never return from (a publish on a dead or blocked
    /// socket); the watchdog shuts the socket down if it takes longer than two heartbeats during
    /// which the broker sent nothing.
    func blockingCall<T>(_ body: () -> T) -> T {
        blockingCallStartedAt.store(Self.monotonicNanoseconds(), ordering: .relaxed)
        defer { blockingCallStartedAt.store(0, ordering: .relaxed) }
        return body()
    }

    /// Without heartbeats (`heartbeat=0`) there is no watchdog, as there is no silence check: a
    /// broker that holds a publish back sends nothing meanwhile, and only TCP can tell it from a
    /// dead one.
    private func startWatchdog() {
        guard let state, heartbeat > .zero else { return }
        socketFD.store(amqp_get_sockfd(state), ordering: .relaxed)
        let limit = UInt64(max(heartbeat, .seconds(2)).components.seconds) * 2_000_000_000
        let thread = Thread { [self] in
            Self.nameCurrentThread("amqp watchdog")
            // What the broker sent that the stuck call has not read: while it grows, the broker is
            // alive (its heartbeats, connection.blocked) and only holds the call back, as a memory
            // alarm holds large publishes in the socket's buffers.
            var call: UInt64 = 0
            var unread: Int32 = 0
            var heard: UInt64 = 0
            while true {
                usleep(250_000)
                let fd = socketFD.load(ordering: .relaxed)
                guard fd >= 0 else { return }
                let started = blockingCallStartedAt.load(ordering: .relaxed)
                guard started != 0 else { continue }
                let now = Self.monotonicNanoseconds()
                let bytes = crmq_bytes_unread(fd)
                if started != call {
                    (call, unread, heard) = (started, bytes, started)
                } else if bytes != unread {
                    (unread, heard) = (bytes, now)
                }
                if now - heard > limit {
                    logger.error("AMQP call stuck for two heartbeats with nothing from the broker; shutting the socket down")
                    shutdown(fd, Int32(SHUT_RDWR))
                    return
                }
            }
        }
        thread.stackSize = 64 << 10
        thread.start()
    }

    /// Names the calling thread (its first 15 bytes). Foundation's `Thread.name`, set before
    /// `start()`, never reaches the system's thread on Linux.
    static func nameCurrentThread(_ name: String) {
        _ = crmq_name_thread(name)
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    func setNegotiated(heartbeat seconds: Int32, frameMax: Int32) {
        assertOnOwnerThread()
        _heartbeat = .seconds(Int(seconds))
        _frameMax = Int(frameMax)
        lastInbound = .now
    }
}

// MARK: Owner-thread members

extension ConnectionLoop {
    /// The library's connection; nil before it is created and after it is destroyed.
    var state: amqp_connection_state_t? {
        _read { assertOnOwnerThread(); yield _state }
        _modify { assertOnOwnerThread(); yield &_state }
    }

    var channels: [UInt16: ChannelState] {
        _read { assertOnOwnerThread(); yield _channels }
        _modify { assertOnOwnerThread(); yield &_channels }
    }

    var nextChannelID: UInt64 {
        _read { assertOnOwnerThread(); yield _nextChannelID }
        _modify { assertOnOwnerThread(); yield &_nextChannelID }
    }

    /// Numbers of channels closed while frames the broker sent them were still queued: not given
    /// to a new channel until those are drained (``openChannel()``).
    var closedWithFramesQueued: Set<UInt16> {
        _read { assertOnOwnerThread(); yield _closedWithFramesQueued }
        _modify { assertOnOwnerThread(); yield &_closedWithFramesQueued }
    }

    /// Frames read and not handled yet: librabbitmq's queue and those set aside here.
    var framesQueued: Int {
        guard let state else { return 0 }
        return Int(amqp_frames_enqueued(state)) + setAsideFrames.count
    }

    /// Where C arguments live for one library call.
    var arena: CArena {
        assertOnOwnerThread()
        return _arena
    }

    var lastInbound: ContinuousClock.Instant {
        _read { assertOnOwnerThread(); yield _lastInbound }
        _modify { assertOnOwnerThread(); yield &_lastInbound }
    }

    /// Frames of other channels read while a message's content was read, in arrival order;
    /// dispatched before anything else is read.
    var setAsideFrames: [amqp_frame_t] {
        _read { assertOnOwnerThread(); yield _setAsideFrames }
        _modify { assertOnOwnerThread(); yield &_setAsideFrames }
    }

    /// The negotiated heartbeat interval (zero: none).
    var heartbeat: Duration {
        assertOnOwnerThread()
        return _heartbeat
    }

    /// The negotiated largest frame, envelope included.
    var frameMax: Int {
        assertOnOwnerThread()
        return _frameMax
    }

    /// Consumers holding deliveries from the current pass over the socket.
    var sinksToFlush: [ConsumerSink] {
        _read { assertOnOwnerThread(); yield _sinksToFlush }
        _modify { assertOnOwnerThread(); yield &_sinksToFlush }
    }

    /// Deliveries read in the current pass over the socket.
    var deliveriesInPass: Int {
        _read { assertOnOwnerThread(); yield _deliveriesInPass }
        _modify { assertOnOwnerThread(); yield &_deliveriesInPass }
    }

    /// Whether the socket holds partial segments back (`setCorked`).
    private var isCorked: Bool {
        _read { assertOnOwnerThread(); yield _isCorked }
        _modify { assertOnOwnerThread(); yield &_isCorked }
    }

    /// Until when publishes are sent at once (`gatherPublishes`).
    private var gatheringRestsUntil: ContinuousClock.Instant {
        _read { assertOnOwnerThread(); yield _gatheringRestsUntil }
        _modify { assertOnOwnerThread(); yield &_gatheringRestsUntil }
    }

    /// How many publishes a gathering finds on average (`gatherPublishes`).
    private var gatheredOnAverage: Double {
        _read { assertOnOwnerThread(); yield _gatheredOnAverage }
        _modify { assertOnOwnerThread(); yield &_gatheredOnAverage }
    }

    /// Deliveries read in the previous pass over the socket.
    private var deliveriesInLastPass: Int {
        _read { assertOnOwnerThread(); yield _deliveriesInLastPass }
        _modify { assertOnOwnerThread(); yield &_deliveriesInLastPass }
    }
}
