import Blitline

/// Failures the simulator injects, set by flags at start and changed at run time through
/// `POST /_control`.
///
/// Counts ("the next N") are used up as they fire; fractions apply to every request after the
/// counts are spent.
public struct FaultPlan: Sendable, Hashable {
    /// The next N submits fail with ``failSubmitStatus`` and no Blitline `error` body.
    public var failSubmits = 0
    /// The fraction (0…1) of further submits that fail that way.
    public var failSubmitFraction = 0.0
    /// The HTTP status of an injected submit failure. Default 500.
    public var failSubmitStatus = 500
    /// `Retry-After` seconds sent with an injected failure, when set.
    public var retryAfterSeconds: Int?
    /// Added to every submit before it is answered.
    public var submitLatency: Duration = .zero
    /// The next N submits are accepted (their jobs run and are posted back) but answered with
    /// ``failSubmitStatus`` and no Blitline `error` body, as when a gateway loses Blitline's answer.
    public var loseSubmitAnswers = 0
    /// The next N submits hang: no answer for ``hangDuration``, then a 503.
    public var hangSubmits = 0
    /// How long a hung submit hangs. Default 1 hour.
    public var hangDuration: Duration = .seconds(3600)
    /// The next N postbacks are never sent (lost, as Blitline loses one after its last retry).
    public var dropPostbacks = 0
    /// The fraction (0…1) of further postbacks that are never sent.
    public var dropPostbackFraction = 0.0
    /// The next N postbacks are delivered twice.
    public var duplicatePostbacks = 0
    /// The fraction (0…1) of further postbacks that are delivered twice.
    public var duplicatePostbackFraction = 0.0
    /// Waited before the first attempt of every postback.
    public var postbackDelay: Duration = .zero
    /// While set, no postback's first attempt goes out (after ``postbackDelay``); they all go once
    /// it is cleared. A test can then put the bridge in a state before any result arrives.
    public var holdPostbacks = false

    /// No faults.
    public init() {}

    /// Whether the next submit fails; uses up a count.
    mutating func takeSubmitFailure() -> Bool {
        Self.take(&self.failSubmits, fraction: self.failSubmitFraction)
    }

    /// Whether the next submit's answer is lost; uses up a count.
    mutating func takeLostSubmitAnswer() -> Bool {
        Self.take(&self.loseSubmitAnswers, fraction: 0)
    }

    /// Whether the next submit hangs; uses up a count.
    mutating func takeSubmitHang() -> Bool {
        Self.take(&self.hangSubmits, fraction: 0)
    }

    /// Whether the next postback is dropped; uses up a count.
    mutating func takePostbackDrop() -> Bool {
        Self.take(&self.dropPostbacks, fraction: self.dropPostbackFraction)
    }

    /// Whether the next postback is duplicated; uses up a count.
    mutating func takePostbackDuplicate() -> Bool {
        Self.take(&self.duplicatePostbacks, fraction: self.duplicatePostbackFraction)
    }

    private static func take(_ count: inout Int, fraction: Double) -> Bool {
        if count > 0 {
            count -= 1
            return true
        }
        return fraction > 0 && Double.random(in: 0..<1) < fraction
    }
}

extension FaultPlan {
    /// Applies the members of a `POST /_control` document; unknown keys are an error.
    mutating func apply(_ json: JSONValue) throws(ControlError) {
        guard let members = json.objectMembers else { throw ControlError("expected a JSON object") }
        for member in members {
            let value = member.value
            switch member.key {
            case "fail_submits": self.failSubmits = try Self.count(value, member.key)
            case "fail_submit_fraction": self.failSubmitFraction = try Self.fraction(value, member.key)
            case "fail_submit_status": self.failSubmitStatus = try Self.count(value, member.key)
            case "retry_after_seconds": self.retryAfterSeconds = value.isNull ? nil : try Self.count(value, member.key)
            case "submit_latency_ms": self.submitLatency = .milliseconds(try Self.count(value, member.key))
            case "lose_submit_answers": self.loseSubmitAnswers = try Self.count(value, member.key)
            case "hang_submits": self.hangSubmits = try Self.count(value, member.key)
            case "hang_ms": self.hangDuration = .milliseconds(try Self.count(value, member.key))
            case "drop_postbacks": self.dropPostbacks = try Self.count(value, member.key)
            case "drop_postback_fraction": self.dropPostbackFraction = try Self.fraction(value, member.key)
            case "duplicate_postbacks": self.duplicatePostbacks = try Self.count(value, member.key)
            case "duplicate_postback_fraction": self.duplicatePostbackFraction = try Self.fraction(value, member.key)
            case "postback_delay_ms": self.postbackDelay = .milliseconds(try Self.count(value, member.key))
            case "hold_postbacks":
                guard let hold = value.boolValue else { throw ControlError("`hold_postbacks` must be true or false") }
                self.holdPostbacks = hold
            case "reset_stats": break
            default: throw ControlError("unknown setting `\(member.key)`")
            }
        }
    }

    /// The plan as the JSON that `/_control` answers with.
    var json: JSONValue {
        [
            "fail_submits": .number(self.failSubmits),
            "fail_submit_fraction": .number(JSONValue.lexeme(of: self.failSubmitFraction)),
            "fail_submit_status": .number(self.failSubmitStatus),
            "retry_after_seconds": self.retryAfterSeconds.map { .number($0) } ?? .null,
            "submit_latency_ms": .number(self.submitLatency.milliseconds),
            "lose_submit_answers": .number(self.loseSubmitAnswers),
            "hang_submits": .number(self.hangSubmits),
            "hang_ms": .number(self.hangDuration.milliseconds),
            "drop_postbacks": .number(self.dropPostbacks),
            "drop_postback_fraction": .number(JSONValue.lexeme(of: self.dropPostbackFraction)),
            "duplicate_postbacks": .number(self.duplicatePostbacks),
            "duplicate_postback_fraction": .number(JSONValue.lexeme(of: self.duplicatePostbackFraction)),
            "postback_delay_ms": .number(self.postbackDelay.milliseconds),
            "hold_postbacks": .bool(self.holdPostbacks),
        ]
    }

    private static func count(_ value: JSONValue, _ key: String) throws(ControlError) -> Int {
        guard let int = value.intValue, int >= 0 else { throw ControlError("`\(key)` must be a non-negative integer") }
        return int
    }

    private static func fraction(_ value: JSONValue, _ key: String) throws(ControlError) -> Double {
        guard let double = value.doubleValue, (0...1).contains(double) else {
            throw ControlError("`\(key)` must be a number from 0 to 1")
        }
        return double
    }
}

/// A `POST /_control` document that cannot be applied.
struct ControlError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int {
        let (seconds, attoseconds) = self.components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }

    /// Seconds as a `Double`.
    var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
