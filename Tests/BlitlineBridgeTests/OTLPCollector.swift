import Blitline
import Foundation
import Hummingbird
import Synchronization
import TestSupport

/// A small OTLP/HTTP collector for tests: takes `POST /v1/traces` in the JSON encoding
/// (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) and keeps every span.
final class OTLPCollector: Sendable {
    /// One span as exported, ids in lower-case hex.
    struct Span: Sendable, CustomStringConvertible {
        var name: String
        var traceID: String
        var spanID: String
        var parentSpanID: String?
        /// OTLP's `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
        var kind: Int
        var attributes: [String: String]
        var links: [String]

        var description: String {
            "\(name) [kind \(kind)] \(traceID)/\(spanID) parent \(parentSpanID ?? "none") links \(links)"
        }
    }

    private let received = Mutex<[Span]>([])

    var spans: [Span] { received.withLock { $0 } }

    /// Serves on 127.0.0.1 port 0 while `body` runs, passing the endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    func serve<T: Sendable>(_ body: (String) async throws -> T) async throws -> T {
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            var request = request
            let bytes = Array(buffer: try await request.collectBody(upTo: 16 << 20))
            let spans = try Self.spans(in: JSONValue(parsing: bytes))
            self.received.withLock { $0 += spans }
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        return try await serving(router) { port in try await body("http://127.0.0.1:\(port)") }
    }

    /// The spans of an `ExportTraceServiceRequest`.
    static func spans(in request: JSONValue) -> [Span] {
        var spans: [Span] = []
        for resource in request["resourceSpans"]?.arrayValue ?? [] {
            for scope in resource["scopeSpans"]?.arrayValue ?? [] {
                for span in scope["spans"]?.arrayValue ?? [] {
                    var attributes: [String: String] = [:]
                    for attribute in span["attributes"]?.arrayValue ?? [] {
                        guard let key = attribute["key"]?.stringValue, let value = attribute["value"] else { continue }
                        attributes[key] = value["stringValue"]?.stringValue ?? value["intValue"]?.stringValue
                            ?? value["intValue"]?.intValue.map(String.init)
                    }
                    spans.append(
                        Span(
                            name: span["name"]?.stringValue ?? "", traceID: hex(span["traceId"]),
                            spanID: hex(span["spanId"]),
                            parentSpanID: span["parentSpanId"].map(hex).flatMap { $0.isEmpty ? nil : $0 },
                            kind: span["kind"]?.intValue ?? 0, attributes: attributes,
                            links: (span["links"]?.arrayValue ?? []).map { hex($0["spanId"]) }))
                }
            }
        }
        return spans
    }

    /// OTLP/JSON writes ids in hex; protobuf's JSON mapping, which some exporters use, in base64.
    private static func hex(_ value: JSONValue?) -> String {
        guard let text = value?.stringValue, !text.isEmpty else { return "" }
        if text.count == 32 || text.count == 16, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let bytes = Data(base64Encoded: text) else { return text }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }
}
