import AsyncSupport

/// Bounds how many bytes of requests are worked on at once. A request is parsed into a JSON tree,
/// prepared, encoded and sent several times over; with `PREFETCH` requests of `MAX_REQUEST_BYTES`
/// in hand, doing that for all of them at once would multiply the memory they take. Requests wait
/// their turn in arrival order; one larger than the whole budget waits until it has it all.
final class ByteBudget: Sendable {
    let capacity: Int
    /// The bytes free, and the requests waiting with the bytes each needs.
    private let line: WaitingLine<Int, Int, Bool>

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.line = WaitingLine(capacity)
    }

    /// Runs `body` once `bytes` (at most the capacity) are free, and frees them after it.
    /// Throws `CancellationError` if the task is cancelled while it waits.
    func withBytes<T>(_ bytes: Int, _ body: () async throws -> T) async throws -> T {
        let bytes = min(max(bytes, 1), capacity)
        try await acquire(bytes)
        defer { release(bytes) }
        return try await body()
    }

    private func acquire(_ bytes: Int) async throws {
        let granted = await line.wait(bytes, cancelled: false) { available, line in
            guard line.isEmpty, available >= bytes else { return nil }
            available -= bytes
            return true
        }
        guard granted else {
            // A waiter that left from the head of the line may have been holding others back.
            grant()
            throw CancellationError()
        }
    }

    private func release(_ bytes: Int) {
        grant(freeing: bytes)
    }

    /// Frees `bytes`, then lets in, in order, the waiters the free bytes now cover.
    private func grant(freeing bytes: Int = 0) {
        let ready = line.withLock { available, line in
            available += bytes
            var count = 0
            while count < line.count, available >= line[count] {
                available -= line[count]
                count += 1
            }
            return line.removeFirst(count)
        }
        for waiter in ready { waiter.resume(returning: true) }
    }
}
