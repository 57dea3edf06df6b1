import Foundation
import Testing
import TestSupport

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

extension BridgeHarness {
    /// Publishes `requests` while a downstream queue bound to the events exchange refuses every
    /// event (`x-max-length` 0, `reject-publish`) for `meanwhile` and then `duration`, then
    /// deletes that queue and waits
    /// until each request has an event published after it. The test's own events queue gets a copy
    /// of each event the full queue refuses (the broker routes it there all the same), so only the
    /// count tells. Returns whether every request got one within 60 s (a request set back waits up
    /// to 30 s in a retry queue).
    func publish(
        _ requests: [TestRequest], whileEventsAreRefusedFor duration: Duration,
        meanwhile: () async throws -> Void = {}
    ) async throws -> Bool {
        let full = jobsQueue + ".full-downstream"
        let broker = try await TestEnvironment.connect()
        let channel = try await broker.openChannel()
        try await channel.declareQueue(full, arguments: ["x-max-length": .int64(0), "x-overflow": .string("reject-publish")])
        try await channel.bindQueue(full, exchange: eventsExchange, routingKey: "job.#")
        try await publish(requests)
        try await meanwhile()
        try await Task.sleep(for: duration)
        let refused = requests.map { events.events(for: $0.id).count }
        _ = try await channel.deleteQueue(full)
        await broker.close()
        return await eventually(timeout: .seconds(60)) {
            zip(requests, refused).allSatisfy { events.events(for: $0.id).count > $1 }
        }
    }

    /// After the refusal above outlasted what Blitline keeps of each result and the jobs'
    /// deadlines: each result was held, and each job completed under one event id with no `timeout`.
    func expectResultsHeld(_ requests: [TestRequest], by bridge: BridgeProcess, sourceLocation: SourceLocation = #_sourceLocation)
        async throws
    {
        try await Task.sleep(for: .seconds(5))  // room for a timeout that should not come
        try await barrier()
        let ids = events.idsByRequest
        for request in requests {
            let reasons = Set(events.events(for: request.id).map { $0.reason ?? $0.status ?? "?" })
            #expect(reasons == ["completed"], "\(request.id): \(reasons)", sourceLocation: sourceLocation)
            #expect(ids[request.id]?.count == 1, "\(request.id): \(ids[request.id] ?? [])", sourceLocation: sourceLocation)
        }
        let held = try await bridge.metrics().value("blitline_bridge_events_held_total")
        #expect(held >= Double(requests.count), sourceLocation: sourceLocation)
        #expect(bridge.isRunning, "the bridge died:\n\(bridge.logTail())", sourceLocation: sourceLocation)
    }
}
