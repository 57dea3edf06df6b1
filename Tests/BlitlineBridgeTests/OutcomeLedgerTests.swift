import Synchronization
import Testing
import TestSupport

@testable import BlitlineBridge

/// What an instance keeps to decide timeouts (README, "What deadlines cost" under Design: at most 32 bytes per outcome).
@Suite struct OutcomeLedgerTests {
    /// An hour's window, 16 generations of about four minutes.
    let window: Int64 = 3_600_000

    // The two tests below spend seconds of CPU each: they run on a thread of their own, not on one
    // of the cooperative pool's two threads, which the servers and timers of the tests running
    // beside them need (with both taken at the start of the suite, work that returns at once
    // waited more than 5 s for a thread and lost the deadline race's test).

    @Test func aMillionOutcomesCostAtMost32BytesEachAndAreAllFound() async throws {
        let window = window
        let count = 1_000_000
        let (stored, bytes, allFound, othersFound) = try await onOwnThread {
            var set = Fingerprints(span: window / 16)
            // 1,000 outcomes a second over a thousand seconds, read as they come.
            for index in 0..<count {
                let time = Int64(index)
                set.insert(Fingerprints.fingerprint("request-\(index)"), time: time, now: time, keepingSince: time - window)
            }
            return (
                set.count, set.storageBytes,
                (0..<count).allSatisfy { set.contains(Fingerprints.fingerprint("request-\($0)")) },
                (0..<10_000).filter { set.contains(Fingerprints.fingerprint("other-\($0)")) }.count
            )
        }
        let perOutcome = Double(bytes) / Double(count)
        print("ledger: \(count) outcomes in \(bytes) bytes, \(perOutcome) bytes each")
        #expect(stored == count)
        #expect(perOutcome <= 32)
        #expect(allFound)
        #expect(othersFound == 0)
    }

    @Test func aBacklogReadAtOnceIsSealedInPartsAndStaysSmall() async throws {
        let window = window
        let (bytes, endsFound) = try await onOwnThread {
            var set = Fingerprints(span: window / 16, maxOpen: 1 << 18)
            for index in 0..<1_000_000 {
                set.insert(Fingerprints.fingerprint("backlog-\(index)"), time: Int64(index), now: 0, keepingSince: -window)
            }
            return (
                set.storageBytes,
                set.contains(Fingerprints.fingerprint("backlog-0")) && set.contains(Fingerprints.fingerprint("backlog-999999"))
            )
        }
        #expect(Double(bytes) / 1_000_000 <= 32)
        #expect(endsFound)
    }

    @Test func outcomesAreForgottenOnlyOnceTheirEventIsOlderThanTheWindow() {
        let start: Int64 = 1_000_000_000_000
        let clock = SettableClock(start)
        let ledger = OutcomeLedger(window: .seconds(3600), clock: clock.wallClock)
        ledger.record("completed", for: "early", time: start)
        clock.set(start + 1_800_000)
        ledger.record("failed", for: "later", time: start + 1_800_000)
        clock.set(start + 3_600_000)
        ledger.record("completed", for: "a-while", time: start + 3_500_000)
        #expect(ledger.isSettled("early") && ledger.isSettled("later"))
        // An hour and a generation after the first event, it is gone; the others stay.
        clock.set(start + 3_900_000)
        ledger.record("completed", for: "last", time: start + 3_900_000)
        #expect(!ledger.isSettled("early"))
        #expect(ledger.isSettled("later") && ledger.isSettled("a-while") && ledger.isSettled("last"))
    }

    @Test func aLateResultDoesNotSettleItsJob() {
        let ledger = OutcomeLedger(window: .seconds(3600), clock: .fixed(at: 0))
        ledger.record("late", for: "r", time: 0)
        #expect(!ledger.isSettled("r"))
        ledger.record("timeout", for: "r", time: 0)
        #expect(ledger.isSettled("r"))
    }

    /// Request ids are compared as AMQP carries them, byte for byte: two ids that Swift's
    /// `String` holds equal (the same text in two Unicode normalizations) are two requests.
    @Test func idsThatDifferOnlyInTheirUnicodeNormalizationAreTwoRequests() {
        let ledger = OutcomeLedger(window: .seconds(3600), clock: .fixed(at: 0))
        ledger.record("completed", for: "caf\u{E9}", time: 0)
        #expect(ledger.isSettled("caf\u{E9}"))
        #expect(!ledger.isSettled("cafe\u{301}"))
    }

    @Test func aDeadlineWithinTheWindowNeedsNoBackfill() async {
        let now: Int64 = 10_000_000_000
        let clock = SettableClock(now)
        let ledger = OutcomeLedger(window: .seconds(3600), clock: clock.wallClock)
        _ = ledger.liveStart()
        #expect(await ledger.cover(since: now - 3_600_000, timeout: .milliseconds(10)))
        // Older than what the live reader reads: it waits for a backfill (none runs here).
        #expect(await !ledger.cover(since: now - 3_600_001, timeout: .milliseconds(10)))
        // An hour later, what the live reader read first has been forgotten.
        clock.set(now + 3_600_001)
        #expect(await !ledger.cover(since: now, timeout: .milliseconds(10)))
    }
}

/// A wall clock the test moves.
final class SettableClock: Sendable {
    private let milliseconds: Mutex<Int64>

    init(_ milliseconds: Int64) { self.milliseconds = Mutex(milliseconds) }

    func set(_ value: Int64) { milliseconds.withLock { $0 = value } }

    var wallClock: WallClock { WallClock { [self] in milliseconds.withLock { $0 } } }
}
