import AsyncSupport
import Synchronization
import Testing
import TestSupport

/// Tasks waiting their turn: answered in order by their owner, or at once when cancelled, and
/// always exactly once.
@Suite struct WaitingLineTests {
    typealias Line = WaitingLine<Int, Int, String>

    /// Starts a task that waits in `line` with `element`, and returns once it is parked.
    func park(_ element: Int, in line: Line) async throws -> Task<String, Never> {
        let before = line.withLock { _, line in line.count }
        let task = Task { await line.wait(element, cancelled: "cancelled") }
        try #require(await eventually(timeout: .seconds(10)) { line.withLock { _, line in line.count } == before + 1 })
        return task
    }

    @Test func waitersAreAnsweredInArrivalOrderByTheirOwner() async throws {
        let line = Line(0)
        let tasks = [try await park(1, in: line), try await park(2, in: line), try await park(3, in: line)]
        let first = line.withLock { _, line in line.removeFirst(2) }
        #expect(first.map(\.element) == [1, 2])
        for waiter in first { waiter.resume(returning: "turn \(waiter.element)") }
        #expect(await tasks[0].value == "turn 1")
        #expect(await tasks[1].value == "turn 2")
        #expect(line.withLock { _, line in line.count } == 1)
        for waiter in line.withLock({ _, line in line.removeAll() }) { waiter.resume(returning: "last") }
        #expect(await tasks[2].value == "last")
    }

    @Test func theOwnersDecisionAnswersAtOnceWithoutParking() async {
        let line = Line(1)
        let parked = Mutex(false)
        let answer = await line.wait(7, cancelled: "cancelled") { free, _ in
            guard free > 0 else { return nil }
            free -= 1
            return "at once"
        } parked: {
            parked.withLock { $0 = true }
        }
        #expect(answer == "at once")
        #expect(!parked.withLock { $0 })
        #expect(line.withLock { free, line in free == 0 && line.isEmpty })
    }

    @Test func aCancelledWaiterLeavesTheLineAtOnce() async throws {
        let line = Line(0)
        let staying = try await park(1, in: line)
        let leaving = try await park(2, in: line)
        leaving.cancel()
        #expect(await leaving.value == "cancelled")
        #expect(line.withLock { _, line in line.count == 1 && line[0] == 1 })
        for waiter in line.withLock({ _, line in line.removeAll() }) { waiter.resume(returning: "served") }
        #expect(await staying.value == "served")
    }

    @Test func aTaskCancelledBeforeItWaitsNeverParks() async {
        let line = Line(0)
        let parked = Mutex(false)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await line.wait(1, cancelled: "cancelled", decide: { _, _ in "decided" }) {
                parked.withLock { $0 = true }
            }
        }
        #expect(await task.value == "cancelled")
        #expect(!parked.withLock { $0 })
        #expect(line.withLock { _, line in line.isEmpty })
    }

    /// Owners serving and tasks cancelled at the same time: each task gets exactly one answer
    /// (a second would trap in the checked continuation) and none is left waiting.
    @Test func cancellationRacingTheOwnerAnswersEachTaskOnce() async throws {
        let line = Line(0)
        let count = 2_000
        let answers = Answers()
        let tasks = (0..<count).map { element in
            Task {
                let answer = await line.wait(element, cancelled: "cancelled")
                answers.count(answer)
            }
        }
        let server = Task {
            while answers.total < count {
                for waiter in line.withLock({ _, line in line.removeFirst(min(line.count, 7)) }) {
                    waiter.resume(returning: "served")
                }
                await Task.yield()
            }
        }
        for (index, task) in tasks.enumerated() where index % 2 == 0 { task.cancel() }
        let done = await eventually(timeout: .seconds(30)) { answers.total == count }
        server.cancel()
        #expect(done, "\(answers.total) of \(count) answered")
        #expect(line.withLock { _, line in line.isEmpty })
    }
}

/// How many tasks got each answer.
private final class Answers: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func count(_ answer: String) { counts.withLock { $0[answer, default: 0] += 1 } }

    var total: Int { counts.withLock { $0.values.reduce(0, +) } }
}
