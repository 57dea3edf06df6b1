/// The one way durations are written in settings and on command lines, of the bridge and of the
/// simulator: `250ms`, `30s`, `10m`, `1h` or bare seconds, digits with at most one decimal point
/// (no sign, exponent, `inf` or `nan`), shorter than a hundred years.
public enum DurationText {
    /// Why a text is not a duration.
    public enum Problem: Error, Equatable, CustomStringConvertible {
        case notADuration, notPositive, tooLong, tooShort

        public var description: String {
            switch self {
            case .notADuration: "is not a duration"
            case .notPositive: "must be longer than zero"
            case .tooLong: "is longer than a hundred years"
            case .tooShort: "is shorter than a nanosecond"
            }
        }
    }

    /// `text` as a duration; zero only where `allowingZero` (a simulator's delay may be none).
    public static func parse(_ text: some StringProtocol, allowingZero: Bool = false) throws(Problem) -> Duration {
        let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        let unit = units.first { text.hasSuffix($0.suffix) && decimal(text.dropLast($0.suffix.count)) != nil }
        let seconds = unit.map { unit in decimal(text.dropLast(unit.suffix.count)).map { $0 * unit.seconds } } ?? decimal(text)
        guard let seconds else { throw .notADuration }
        if seconds == 0, allowingZero { return .zero }
        guard seconds > 0 else { throw .notPositive }
        guard seconds < 100 * 365 * 86400 else { throw .tooLong }
        let nanoseconds = (seconds * 1e9).rounded()
        guard nanoseconds >= 1 else { throw .tooShort }
        return .nanoseconds(Int64(nanoseconds))
    }

    /// `duration` as `parse` reads it back: `30m` for 1800 s, `250ms`, `1.5` for fractions of seconds.
    public static func text(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if attoseconds == 0 {
            if seconds != 0, seconds % 3600 == 0 { return "\(seconds / 3600)h" }
            if seconds != 0, seconds % 60 == 0 { return "\(seconds / 60)m" }
            return "\(seconds)s"
        }
        if attoseconds % 1_000_000_000_000_000 == 0 {
            return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)ms"
        }
        let number = Double(seconds) + Double(attoseconds) / 1e18
        return number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
    }

    /// Digits with at most one decimal point; no signs, exponents, `inf` or hex.
    public static func decimal(_ text: some StringProtocol) -> Double? {
        var digits = 0
        var points = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digits += 1
            case UInt8(ascii: "."): points += 1
            default: return nil
            }
        }
        guard digits > 0, points <= 1 else { return nil }
        return Double(String(text))
    }
}
