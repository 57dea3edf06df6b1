import AMQP
import Blitline
import Foundation
import Testing
import TestSupport

extension BridgeProcessTests {
    /// Tracing (README, "Tracing"): with an OTLP endpoint, one job's spans form one tree under the
    /// producer's trace context, its Blitline calls carry the trace, and its event and log lines
    /// name the span that published it.
    @Suite struct TracingTests {
        static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        static let producerSpanID = "00f067aa0ba902b7"

        @Test func oneJobsSpansFormATreeUnderItsProducerAndItsEventCarriesTheLast() async throws {
            let collector = OTLPCollector()
            try await collector.serve { endpoint in
                try await BridgeHarness.run("tracing") { h in
                    var settings = try h.settings()
                    settings.extra = [
                        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                        "OTEL_BSP_SCHEDULE_DELAY": "100",
                    ]
                    let bridge = try await h.startBridge(settings)
                    var request = TestRequest.thumbnails("traced-0")
                    request.headers = [
                        "traceparent": .string("00-\(Self.traceID)-\(Self.producerSpanID)-01"),
                        "tracestate": .string("vendor=opaque"),
                    ]
                    let event = try #require(try await h.outcomes(of: [request]).single(request))
                    #expect(event.status == "completed")

                    // The request's spans (the harness's sentinel requests have their own traces).
                    func mine() -> [OTLPCollector.Span] { collector.spans.filter { $0.traceID == Self.traceID } }
                    let arrived = await eventually(timeout: .seconds(20)) {
                        ["process \(h.jobsQueue)", "POST", "postback"].allSatisfy { name in mine().contains { $0.name == name } }
                    }
                    let spans = mine()
                    try #require(arrived, "spans: \(collector.spans)")
                    let process = try #require(spans.first { $0.name == "process \(h.jobsQueue)" })
                    let submit = try #require(spans.first { $0.name == "POST" })
                    let postback = try #require(spans.first { $0.name == "postback" })

                    // One trace: the producer's; the consumer span its child, the rest the consumer's.
                    #expect(spans.count == 3, "\(spans)")
                    #expect(postback.attributes["blitline_bridge.request_id"] == request.id)
                    #expect(process.parentSpanID == Self.producerSpanID && process.kind == 5, "\(process)")
                    #expect(process.attributes["messaging.destination.name"] == h.jobsQueue)
                    #expect(process.attributes["blitline_bridge.request_id"] == request.id)
                    #expect(submit.parentSpanID == process.spanID && submit.kind == 3, "\(submit)")
                    #expect(submit.attributes["url.path"] == "/job" && submit.attributes["http.status_code"] == "200", "\(submit.attributes)")
                    // The postback's span continues from the context its signed URL carried.
                    #expect(postback.parentSpanID == process.spanID && postback.kind == 2, "\(postback)")

                    // The event carries the span that published it, in its headers and as CloudEvents attributes.
                    let traceparent = "00-\(Self.traceID)-\(postback.spanID)-01"
                    #expect(event.properties.headers?["traceparent"]?.stringValue == traceparent)
                    #expect(event.properties.headers?["tracestate"]?.stringValue == "vendor=opaque")
                    #expect(event.json?["traceparent"]?.stringValue == traceparent)
                    #expect(event.json?["tracestate"]?.stringValue == "vendor=opaque")
                    let violations = event.json.map(EventSchema.violations(of:)) ?? ["not JSON"]
                    #expect(violations.isEmpty, "\(violations)")

                    // Log lines written inside a span name it.
                    let published = bridge.logLines.compactMap { try? JSONValue(parsing: Array($0.utf8)) }
                        .first { $0["message"]?.stringValue == "postback published" }
                    #expect(published?["trace_id"]?.stringValue == Self.traceID, "\(bridge.logTail())")
                    #expect(published?["span_id"]?.stringValue == postback.spanID, "\(bridge.logTail())")
                }
            }
        }

        /// In polling mode, the poll that finds the result is the consumer span's child, and the
        /// event carries it.
        @Test func aPolledJobsResultComesFromAPollSpanUnderItsRequest() async throws {
            let collector = OTLPCollector()
            try await collector.serve { endpoint in
                try await BridgeHarness.run("tracing-poll") { h in
                    var settings = try h.settings()
                    settings.postbackPort = nil
                    settings.extra = [
                        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                        "OTEL_BSP_SCHEDULE_DELAY": "100",
                    ]
                    try await h.startBridge(settings)
                    var request = TestRequest.thumbnails("traced-poll-0")
                    request.headers = ["traceparent": .string("00-\(Self.traceID)-\(Self.producerSpanID)-01")]
                    let event = try #require(try await h.outcomes(of: [request], timeout: .seconds(60)).single(request))
                    #expect(event.status == "completed")
                    func mine() -> [OTLPCollector.Span] { collector.spans.filter { $0.traceID == Self.traceID } }
                    let arrived = await eventually(timeout: .seconds(20)) {
                        let spans = mine()
                        return spans.contains { $0.name == "process \(h.jobsQueue)" } && spans.contains { $0.name.hasPrefix("poll ") }
                    }
                    let spans = mine()
                    try #require(arrived, "spans: \(collector.spans)")
                    let process = try #require(spans.first { $0.name == "process \(h.jobsQueue)" })
                    let polls = spans.filter { $0.name.hasPrefix("poll ") }
                    #expect(polls.allSatisfy { $0.parentSpanID == process.spanID }, "\(spans)")
                    let eventSpan = event.properties.headers?["traceparent"]?.stringValue.map { String($0.dropFirst(36).prefix(16)) }
                    #expect(polls.contains { $0.spanID == eventSpan }, "the event's span \(eventSpan ?? "none") is no poll of \(polls)")
                    // Each poll's long-poll request is its child.
                    let gets = spans.filter { $0.name == "GET" }
                    #expect(!gets.isEmpty && gets.allSatisfy { get in polls.contains { $0.spanID == get.parentSpanID } }, "\(spans)")
                }
            }
        }

        /// Without an OTLP endpoint nothing is recorded, and the request's trace context reaches its
        /// event as it came, in the headers and the CloudEvent alike.
        @Test func withoutAnEndpointTheTraceContextCarriesOverUnchanged() async throws {
            try await BridgeHarness.run("untraced") { h in
                try await h.startBridge()
                var request = TestRequest.thumbnails("untraced-0")
                let traceparent = "00-\(Self.traceID)-\(Self.producerSpanID)-01"
                request.headers = ["traceparent": .string(traceparent), "tracestate": .string("vendor=opaque")]
                let event = try #require(try await h.outcomes(of: [request]).single(request))
                #expect(event.properties.headers?["traceparent"]?.stringValue == traceparent)
                #expect(event.properties.headers?["tracestate"]?.stringValue == "vendor=opaque")
                #expect(event.json?["traceparent"]?.stringValue == traceparent)
                #expect(event.json?["tracestate"]?.stringValue == "vendor=opaque")
            }
        }
    }
}
