import DequeModule

/// A set of 64-bit fingerprints, each kept until its time falls out of a window: what the outcome
/// ledger knows, in about 8 bytes per entry.
///
/// New fingerprints go into an open generation (a `Set`); after `span`, or past `maxOpen` entries,
/// it is sealed into a sorted array of exactly its entries and searched by bisection. A sealed
/// generation is dropped whole at the first sealing after the newest time in it is older than the
/// window, so an entry lives at most two spans longer than it must. With the open generation a
/// small share of the whole, the cost stays near 8 bytes per entry (`storageBytes`, measured in
/// the tests).
///
/// Two distinct keys share a fingerprint with a chance of about n / 2⁶⁴ per lookup among n entries
/// (below 10⁻¹² for ten million): the ledger would then skip one timeout. The hash is seeded per
/// process, so nobody can choose request ids that collide.
struct Fingerprints {
    private struct Sealed {
        var keys: [UInt64]
        /// The newest time of any entry, in milliseconds since the Unix epoch.
        var newest: Int64
    }

    /// How long an open generation takes entries before it is sealed.
    let span: Int64
    /// An open generation is sealed sooner once it holds this many entries (a backlog read at once).
    let maxOpen: Int
    private var sealed: Deque<Sealed> = []
    private var open: Set<UInt64> = []
    private var openNewest = Int64.min
    private var openedAt: Int64?

    /// `span` in milliseconds.
    init(span: Int64, maxOpen: Int = 1 << 18) {
        self.span = span
        self.maxOpen = maxOpen
    }

    /// The fingerprint of `key`'s UTF-8 bytes: ids are told apart as AMQP carries them, where
    /// `String` would take two normalizations of the same text for one.
    static func fingerprint(_ key: String) -> UInt64 {
        var key = key
        return key.withUTF8 { bytes in
            var hasher = Hasher()
            hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
            return UInt64(bitPattern: Int64(hasher.finalize()))
        }
    }

    /// Adds a fingerprint whose entry dates from `time`; `now` decides when to seal, and each
    /// sealing drops the generations whose newest entry is older than `oldest` (all in
    /// milliseconds since the Unix epoch). Only a sealing changes what can be dropped, so the
    /// generations are looked over once a span, not once an entry.
    mutating func insert(_ fingerprint: UInt64, time: Int64, now: Int64, keepingSince oldest: Int64) {
        if let openedAt, now - openedAt >= span || open.count >= maxOpen {
            seal()
            sealed.removeAll { $0.newest < oldest }
        }
        if openedAt == nil { openedAt = now }
        open.insert(fingerprint)
        openNewest = max(openNewest, time)
    }

    func contains(_ fingerprint: UInt64) -> Bool {
        if open.contains(fingerprint) { return true }
        return sealed.contains { generation in
            let keys = generation.keys
            var low = 0
            var high = keys.count
            while low < high {
                let middle = (low + high) / 2
                if keys[middle] < fingerprint { low = middle + 1 } else { high = middle }
            }
            return low < keys.count && keys[low] == fingerprint
        }
    }

    private mutating func seal() {
        var keys = [UInt64]()
        keys.reserveCapacity(open.count)
        keys.append(contentsOf: open)
        keys.sort()
        sealed.append(Sealed(keys: keys, newest: openNewest))
        open = []
        openNewest = .min
        openedAt = nil
    }

    /// Entries held, counting one held in two generations twice.
    var count: Int { open.count + sealed.reduce(0) { $0 + $1.keys.count } }

    /// The bytes the entries' storage takes: each sealed key, and each bucket of the open
    /// generation's hash table with its occupancy bit.
    var storageBytes: Int {
        sealed.reduce(0) { $0 + $1.keys.capacity * 8 } + open.capacity * 4 / 3 * 8 + open.capacity / 6
    }
}
