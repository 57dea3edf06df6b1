import Foundation

/// The wall clock in milliseconds since the Unix epoch: what deadlines, postback tokens, event times
/// and the outcome ledger are reckoned in (they cross processes and restarts, which a monotonic
/// clock does not). Every type that reads it holds one, `.system` unless a test sets the time.
struct WallClock: Sendable {
    private let read: @Sendable () -> Int64

    init(_ read: @escaping @Sendable () -> Int64) {
        self.read = read
    }

    static let system = WallClock { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A clock that stands still at `milliseconds`.
    static func fixed(at milliseconds: Int64) -> WallClock { WallClock { milliseconds } }

    func now() -> Int64 { read() }
}
