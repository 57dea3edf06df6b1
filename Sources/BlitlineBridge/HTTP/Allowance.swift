import Synchronization

/// A quantity shared by all connections (bytes of postback bodies held, postbacks waiting on the
/// broker): taken without waiting while some is left, given back when done. The listener sheds
/// load with a 503 instead of queueing when none is left.
final class Allowance: Sendable {
    /// The most that may be taken at once.
    let limit: Int
    private let taken = Mutex(0)

    init(limit: Int) { self.limit = limit }

    /// Takes `amount` if that much is left; returns whether it did.
    func take(_ amount: Int) -> Bool {
        taken.withLock { taken in
            guard amount <= limit - taken else { return false }
            taken += amount
            return true
        }
    }

    /// Gives back what ``take(_:)`` took.
    func giveBack(_ amount: Int) {
        taken.withLock { $0 -= amount }
    }

    /// What is taken now.
    var inUse: Int { taken.withLock { $0 } }
}
