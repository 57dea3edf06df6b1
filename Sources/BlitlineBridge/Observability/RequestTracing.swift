import Logging
import Tracing

/// A request's trace (README, "Tracing"): each step the bridge takes for it is a span, a child of
/// the W3C trace context the request carries: the producer's, then the consumer span's, which
/// travels on in the postback URL and the deadline and poll messages. Events carry the context of
/// the span that published them.
///
/// Without a tracer (no `OTEL_EXPORTER_OTLP_ENDPOINT`), spans cost next to nothing and record
/// nothing, and the request's own `traceparent` carries over to its event unchanged.
extension RequestEnvelope {
    /// The trace context the request carries, as the bootstrapped tracer reads it.
    var serviceContext: ServiceContext {
        var context = ServiceContext.topLevel
        var headers: [String: String] = [:]
        headers["traceparent"] = traceparent
        headers["tracestate"] = tracestate
        InstrumentationSystem.instrument.extract(headers, into: &context, using: TraceHeaders())
        return context
    }

    /// This envelope with `span`'s trace context, for what follows from the span; unchanged when
    /// no tracer records the span.
    func continued(in span: any Span) -> RequestEnvelope {
        var headers: [String: String] = [:]
        InstrumentationSystem.instrument.inject(span.context, into: &headers, using: TraceHeaders())
        guard let traceparent = headers["traceparent"], Self.isTraceparent(traceparent) else { return self }
        var copy = self
        copy.traceparent = traceparent
        copy.tracestate = headers["tracestate"].flatMap(Self.validTracestate)
        return copy
    }

    /// Runs `body` in a span named `name`, a child of this request's trace context, with the
    /// envelope `body` should carry on (the span's context) and a logger that names the request,
    /// its trace and `jobID`.
    ///
    /// The logger is the body's own (`inout`): a key it adds later, such as the job id once the
    /// job is submitted, goes into the same metadata. Each logger that gains a key while another
    /// shares its metadata copies them (two allocations and a dictionary rebuilt), which a value
    /// passed on to the body would do for every such key (deploy/BENCHMARKS.md, "A request's
    /// logger made once").
    func withSpan<Result>(
        _ name: @autoclosure () -> String, ofKind kind: SpanKind, logger: Logger, jobID: String? = nil,
        _ body: (RequestEnvelope, any Span, inout Logger) async throws -> Result
    ) async rethrows -> Result {
        var logger = logger
        logger[metadataKey: "request_id"] = .string(requestID)
        if let jobID { logger[metadataKey: "job_id"] = .string(jobID) }
        guard Self.isTraced else {
            // Nothing records spans: skip the trace context's round trip through the tracer.
            if let traceID { logger[metadataKey: "trace_id"] = .string(traceID) }
            return try await body(self, NoOpTracer.NoOpSpan(context: .topLevel), &logger)
        }
        return try await Tracing.withSpan(name(), context: serviceContext, ofKind: kind) { span in
            span.attributes["blitline_bridge.request_id"] = requestID
            let continued = continued(in: span)
            if let traceID = continued.traceID { logger[metadataKey: "trace_id"] = .string(traceID) }
            return try await body(continued, span, &logger)
        }
    }

    /// Whether a tracer that records spans is bootstrapped (the executable does so when an OTLP
    /// endpoint is set).
    static var isTraced: Bool { !(InstrumentationSystem.tracer is NoOpTracer) }
}

/// Reads and writes W3C trace context in a dictionary of header values.
struct TraceHeaders: Extractor, Injector {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }

    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
}
