#if canImport(Glibc)
import Glibc
#endif

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-28T23:59:59.123Z`: the time of events and of
/// log lines.
enum Timestamp {
    /// Now, from the system's real-time clock.
    static var now: String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return text(seconds: Int(now.tv_sec), milliseconds: Int(now.tv_nsec) / 1_000_000)
    }

    /// `milliseconds` since the Unix epoch.
    static func text(millisecondsSinceEpoch milliseconds: Int64) -> String {
        // Rounded down, also before the epoch (where the remainder is negative).
        let seconds = Int(milliseconds.floorDiv(1000))
        return text(seconds: seconds, milliseconds: Int(milliseconds) - seconds * 1000)
    }

    private static func text(seconds: Int, milliseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ value: Int, _ count: Int, then separator: UInt8) {
            var divisor = 1
            for _ in 1..<count { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
                rest %= divisor
                divisor /= 10
            }
            out.append(separator)
        }
        digits(Int(parts.tm_year) + 1900, 4, then: UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2, then: UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2, then: UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2, then: UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2, then: UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2, then: UInt8(ascii: "."))
        digits(milliseconds, 3, then: UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }
}

extension Int64 {
    fileprivate func floorDiv(_ divisor: Int64) -> Int64 {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? quotient - 1 : quotient
    }
}
