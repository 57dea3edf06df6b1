import Foundation
import Testing

/// What a test sees after publishing requests: each request's events, and when they may say
/// they were published.
struct Outcomes: Sendable {
    let events: [ReceivedEvent]
    let published: ClosedRange<Date>

    subscript(_ request: TestRequest) -> [ReceivedEvent] { events.filter { $0.subject == request.id } }

    /// The request's only event; records an issue when it has none or several.
    func single(_ request: TestRequest, sourceLocation: SourceLocation = #_sourceLocation) -> ReceivedEvent? {
        let mine = self[request]
        #expect(
            mine.count == 1, "\(request.id) has \(mine.count) events: \(mine.compactMap(\.id))",
            sourceLocation: sourceLocation)
        return mine.count == 1 ? mine[0] : nil
    }

    /// Checks that every one of `requests` completed, exactly once, as its job says.
    func expectEachCompleted(
        _ requests: [TestRequest], via channel: String = "postback", sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for request in requests {
            if let event = single(request, sourceLocation: sourceLocation) {
                expectCompleted(event, of: request, via: channel, published: published, sourceLocation: sourceLocation)
            }
        }
    }
}

extension BridgeHarness {
    /// Publishes `requests`, waits until each has an event, then passes a `barrier`, so that a
    /// request's second event shows if it was published before the sentinel's. Records an issue
    /// (with the bridges' logs) for requests left without an event.
    ///
    /// The barrier races the rest of each request's handling (a bridge that publishes twice for
    /// one postback, a duplicate postback the simulator sends alongside the first): nothing here
    /// waits for that handling to end, so the sentinel wins by the length of its round trip only.
    /// Tests about repeats wait for a fact first (see `BridgePostbackTests`, `BridgeFaultTests`).
    func outcomes(
        of requests: [TestRequest], timeout: Duration = .seconds(30), sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Outcomes {
        let start = Date()
        try await publish(requests)
        let ids = requests.map(\.id)
        #expect(
            await events.waitForEvents(for: ids, timeout: timeout),
            "no event for \(events.missing(ids))\n\(diagnostics())", sourceLocation: sourceLocation)
        try await barrier(sourceLocation: sourceLocation)
        return Outcomes(events: events.events, published: window(since: start))
    }
}
