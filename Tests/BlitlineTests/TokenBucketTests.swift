import Testing

@testable import Blitline

/// The token bucket on instants the test chooses: no sleeping, nothing that depends on how fast the
/// machine runs.
@Suite struct TokenBucketTests {
    let start = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    /// The tries of `tryTake` at each instant (milliseconds from the start), in order.
    func tries(_ bucket: inout TokenBucket, _ instants: [Int]) -> [Bool] {
        instants.map { bucket.tryTake(at: at($0)) }
    }

    @Test func aBurstIsSpentAtOnceThenOneTokenAnInterval() {
        var bucket = TokenBucket(ratePerSecond: 10, burst: 3)
        let first = tries(&bucket, [0, 0, 0, 0, 99, 100, 150, 200])
        #expect(first == [true, true, true, false, false, true, false, true])
        let busy = bucket.isIdle(at: at(250))
        let idle = bucket.isIdle(at: at(500))
        #expect(!busy && idle)
        let again = tries(&bucket, [500, 500, 500, 500])
        #expect(again == [true, true, true, false], "a full bucket again after idling")
    }

    /// The simulator's poll limit: a poll up to 100 ms early for its turn is let in (it was sent in
    /// time and arrived unevenly), a second at once is not, and over a second the rate holds.
    @Test func anEarlyArrivalIsLetInButNotTwoAtOnceNorMoreThanTheRate() {
        var bucket = TokenBucket(ratePerSecond: 5, earliness: .milliseconds(100))
        #expect(tries(&bucket, [0, 10, 120, 130, 290]) == [true, false, true, false, false])
        #expect(tries(&bucket, [300]) == [true], "its turn, 400 ms after the start, less 100 ms")
        let flood = tries(&bucket, Array(stride(from: 300, to: 1_300, by: 5)))
        #expect(flood.filter { $0 }.count == 4, "with the one at 300 ms, five in the second from 300 ms")
    }

    @Test func reservationsAreOneIntervalApartOnceTheBurstIsSpent() {
        var bucket = TokenBucket(ratePerSecond: 5, burst: 2)
        let granted = (0..<4).map { _ in bucket.reserve(at: at(0)) }
        #expect(granted == [at(0), at(0), at(200), at(400)])
        let afterPause = bucket.reserve(at: at(1_000))
        #expect(afterPause == at(1_000), "a reservation after a pause is granted at once")
    }

    @Test func anUnusedReservationIsGivenBackOnlyWhileItIsTheLast() {
        var bucket = TokenBucket(ratePerSecond: 5, burst: 1)
        let first = bucket.reserve(at: at(0))
        let second = bucket.reserve(at: at(0))
        #expect(first == at(0) && second == at(200))
        bucket.cancelReservation(returning: second)
        let again = bucket.reserve(at: at(0))
        #expect(again == at(200), "the returned slot is handed out again")
        let fourth = bucket.reserve(at: at(0))
        _ = bucket.reserve(at: at(0))
        bucket.cancelReservation(returning: fourth)
        let next = bucket.reserve(at: at(0))
        #expect(next == at(800), "a reservation followed by a later one is not given back")
    }
}
