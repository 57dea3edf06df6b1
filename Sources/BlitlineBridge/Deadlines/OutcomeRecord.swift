import AMQP
import Blitline
import Foundation

/// A message of the outcomes stream saying that requests are settled: their `completed` or
/// `failed` events (timeouts included) are confirmed by the broker. One record holds the requests
/// of the events confirmed at about the same moment, as a JSON array of their ids, with header
/// `x-bridge-outcome` `settled` and the time it was written (`timestamp`, in seconds).
///
/// Versions before 0.2 had the events exchange copy every event into the stream instead (the
/// binding `job.#`); the ledger reads both, so instances of either version can share a fleet.
enum OutcomeRecord {
    static let outcome = "settled"
    /// Request ids in one record at most.
    static let maxRequests = 256
    /// A record's body at most: ids that do not fit share the next record. Readers drop larger
    /// bodies unread, as they drop the bodies of events a stream of an earlier version holds.
    static let maxBodyBytes = 64 * 1024
    /// How long a busy bridge lets a record gather the events confirmed after the first; a full
    /// record goes at once, and so does one that no event being published is still coming to (a
    /// quiet bridge writes each at once). Each record is a stream message that costs the broker
    /// far more than its bytes: with keep-alive postbacks at about 4,000 a second, records went
    /// from about 20 events each to about 78, at the price of the postback's answer (never its
    /// event) going out up to 10 ms later (deploy/BENCHMARKS.md).
    static let linger: Duration = .milliseconds(10)

    struct Message {
        var body: [UInt8]
        var properties: AMQPProperties
    }

    /// The records that say these requests are settled: one, unless their ids need more bytes than
    /// a record holds.
    static func records(settling requestIDs: [String], at time: Date = Date()) -> [Message] {
        let properties = AMQPProperties(
            contentType: "application/json", headers: [BridgeHeader.outcome: .string(outcome)],
            deliveryMode: AMQPProperties.persistent, timestamp: UInt64(time.timeIntervalSince1970),
            appID: "blitline-bridge")
        var records: [Message] = []
        var body: [UInt8] = []
        for id in requestIDs {
            let encoded = JSONValue.string(id).jsonBytes
            if !body.isEmpty, body.count + encoded.count + 2 > maxBodyBytes {
                body.append(UInt8(ascii: "]"))
                records.append(Message(body: body, properties: properties))
                body = []
            }
            body.append(UInt8(ascii: body.isEmpty ? "[" : ","))
            body.append(contentsOf: encoded)
        }
        if !body.isEmpty {
            body.append(UInt8(ascii: "]"))
            records.append(Message(body: body, properties: properties))
        }
        return records
    }

    /// The request ids a record's body names; `nil` for a body that is not a JSON array of strings.
    static func requestIDs(in body: [UInt8]) -> [String]? {
        guard let array = (try? JSONValue(parsing: body))?.arrayValue else { return nil }
        var ids: [String] = []
        ids.reserveCapacity(array.count)
        for element in array {
            guard let id = element.stringValue else { return nil }
            ids.append(id)
        }
        return ids
    }
}
