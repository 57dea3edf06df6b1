/// Bounds how much of something is in use at once: bytes of requests worked on, postbacks being
/// sent. Callers wait their turn in arrival order; one asking for more than the whole capacity
/// waits until it has it all.
public final class Budget: Sendable {
    public let capacity: Int
    /// The units free, and the callers waiting with the units each needs.
    private let line: WaitingLine<Int, Int, Bool>

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.line = WaitingLine(capacity)
    }

    /// Runs `body` once `units` (at least one, at most the capacity) are free, and frees them
    /// after it. Throws `CancellationError` if the task is cancelled while it waits.
    public func spending<T>(_ units: Int, _ body: () async throws -> T) async throws -> T {
        let units = min(max(units, 1), capacity)
        try await acquire(units)
        defer { release(units) }
        return try await body()
    }

    private func acquire(_ units: Int) async throws {
        let granted = await line.wait(units, cancelled: false) { available, line in
            guard line.isEmpty, available >= units else { return nil }
            available -= units
            return true
        }
        guard granted else {
            // A waiter that left from the head of the line may have been holding others back.
            grant()
            throw CancellationError()
        }
    }

    private func release(_ units: Int) {
        grant(freeing: units)
    }

    /// Frees `units`, then lets in, in order, the waiters the free units now cover.
    private func grant(freeing units: Int = 0) {
        let ready = line.withLock { available, line in
            available += units
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
