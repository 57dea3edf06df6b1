import AMQP

/// The headers the bridge owns (`x-bridge-*`) on the messages it publishes: events, dead letters,
/// and the copies of requests it puts back for later (retries, setbacks, counted redeliveries).
///
/// A producer can set them too. They are read only within range, and what a producer sets never
/// reaches further than its own request.
package enum BridgeHeader {
    /// The request id, on every copy and event, so that a generated one survives.
    package static let requestID = "x-bridge-request-id"
    /// Why a request was dead-lettered, or the message of a failure decided before a setback.
    static let error = "x-bridge-error"
    /// The submit attempt a retried request comes back for (1 … `SUBMIT_MAX_ATTEMPTS`).
    static let attempt = "x-bridge-attempt"
    /// Blitline accepted the request on an earlier delivery: its job id and submission time (ms).
    static let jobID = "x-bridge-job-id"
    static let submittedAt = "x-bridge-submitted-at"
    /// A failure decided on an earlier delivery whose event could not be published then.
    static let failure = "x-bridge-failure"
    /// How often a publish for this request was refused (nacked, returned, not encodable).
    static let setbacks = "x-bridge-setbacks"
    /// How often a classic queue redelivered this request (quorum queues count in `x-delivery-count`).
    static let redeliveries = "x-bridge-redeliveries"
    /// On events: what the event means for its request (`OutcomeLedger`).
    static let outcome = "x-bridge-outcome"

    /// Every header above: a copy of a request carries only the ones it is given anew.
    static let all: Set<String> = [requestID, error, attempt, jobID, submittedAt, failure, setbacks, redeliveries, outcome]
}

extension AMQPTable {
    /// An integer header within `range`; anything else (absent, another type, out of range) is `nil`.
    func integer(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let value = self[key]?.intValue, range.contains(value) else { return nil }
        return value
    }
}

extension AMQPProperties {
    /// The properties of a copy of a request that the bridge publishes (a dead letter, a retry, a
    /// replay): the request's own, persistent, without `user_id` (the broker closes the channel
    /// on one that is not the publishing user) and without `expiration` (a copy must not vanish
    /// on its way), with the bridge's headers replaced by `bridgeHeaders`.
    ///
    /// A short-string property longer than AMQP's 255 bytes is left out: a request's arrives so
    /// when it was not UTF-8 (each bad byte repaired into three), and the copy must be publishable.
    /// The request id travels in `x-bridge-request-id` all the same.
    ///
    /// `keepingHeaders: false` leaves the producer's other headers out too, for a copy whose
    /// headers would not fit in one frame.
    package func copyForRepublishing(bridgeHeaders: AMQPTable, keepingHeaders: Bool = true) -> AMQPProperties {
        let short = RequestEnvelope.short
        var copy = self
        copy.contentType = short(contentType)
        copy.contentEncoding = short(contentEncoding)
        copy.correlationID = short(correlationID)
        copy.replyTo = short(replyTo)
        copy.messageID = short(messageID)
        copy.type = short(type)
        copy.appID = short(appID)
        copy.clusterID = short(clusterID)
        copy.userID = nil
        copy.expiration = nil
        copy.deliveryMode = AMQPProperties.persistent
        var headers = AMQPTable(
            keepingHeaders ? (headers?.entries ?? []).filter { !BridgeHeader.all.contains($0.key) } : [])
        for (key, value) in bridgeHeaders { headers[key] = value }
        copy.headers = headers.isEmpty ? nil : headers
        return copy
    }
}
