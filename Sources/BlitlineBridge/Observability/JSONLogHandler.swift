import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A swift-log backend that writes one JSON object per line to stderr:
///
/// ```json
/// {"time":"2026-11-29T01:02:03.456Z","level":"info","label":"blitline-bridge","message":"…","job_id":"…"}
/// ```
///
/// `time` is UTC with milliseconds. Metadata follows the fixed fields, sorted by key: string
/// values as JSON strings, nested dictionaries and arrays as JSON. A metadata key that would
/// clash with a fixed field (`time`, `level`, `label`, `message`, `source`, `error`) is written as
/// `metadata.<key>`. `source` (the module) is added at `debug` and `trace` only. Lines from
/// concurrent loggers never interleave: each is written whole, under a lock.
public struct JSONLogHandler: LogHandler {
    /// The least severe level written.
    public var logLevel: Logger.Level
    /// What changes rarely, held by reference: the handler stays small enough to live inside the
    /// logger's existential, so that a request's logger adding its `request_id` and `job_id`
    /// copies no heap box of the handler.
    private var output: Output
    /// The keys set one at a time since `metadata` was last set as a whole, newest first.
    private var added: AddedKey?

    private final class Output: Sendable {
        let label: String
        let sink: LineSink
        let metadataProvider: Logger.MetadataProvider?
        let metadata: Logger.Metadata

        init(label: String, sink: LineSink, metadataProvider: Logger.MetadataProvider?, metadata: Logger.Metadata) {
            self.label = label
            self.sink = sink
            self.metadataProvider = metadataProvider
            self.metadata = metadata
        }
    }

    /// One key set on its own: a request's logger gains a few (request_id, job_id, trace_id), and
    /// a node each costs one small allocation where a dictionary of its own cost a table, the keys'
    /// hashes and the copy of those it shared (deploy/BENCHMARKS.md, "Logger keys in a list").
    /// The keys merge only when a line is written.
    private final class AddedKey: Sendable {
        let key: String
        let value: Logger.Metadata.Value?
        let next: AddedKey?
        let depth: Int

        init(key: String, value: Logger.Metadata.Value?, next: AddedKey?) {
            self.key = key
            self.value = value
            self.next = next
            self.depth = (next?.depth ?? 0) + 1
        }
    }

    /// A logger whose keys are set over and over would grow its list without end: past this
    /// many, the list folds into the metadata.
    private static let maxAddedKeys = 8

    /// Metadata attached to every line of this handler.
    public var metadata: Logger.Metadata {
        get {
            var merged = output.metadata
            var newestFirst: [AddedKey] = []
            var node = added
            while let current = node {
                newestFirst.append(current)
                node = current.next
            }
            for added in newestFirst.reversed() { merged[added.key] = added.value }
            return merged
        }
        set {
            output = Output(label: output.label, sink: output.sink, metadataProvider: output.metadataProvider, metadata: newValue)
            added = nil
        }
    }

    /// Contributes metadata (e.g. from the task-local context) to every line.
    public var metadataProvider: Logger.MetadataProvider? {
        get { output.metadataProvider }
        set { output = Output(label: output.label, sink: output.sink, metadataProvider: newValue, metadata: output.metadata) }
    }

    /// Creates a handler that writes to stderr; use with `LoggingSystem.bootstrap`.
    public init(label: String, level: Logger.Level = .info, metadataProvider: Logger.MetadataProvider? = nil) {
        self.init(label: label, level: level, metadataProvider: metadataProvider, sink: .standardError)
    }

    init(label: String, level: Logger.Level, metadataProvider: Logger.MetadataProvider?, sink: LineSink) {
        self.logLevel = level
        self.output = Output(label: label, sink: sink, metadataProvider: metadataProvider, metadata: [:])
    }

    /// Gets or sets one metadata value of this handler.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get {
            var node = added
            while let current = node {
                if current.key == key { return current.value }
                node = current.next
            }
            return output.metadata[key]
        }
        set {
            if let added, added.depth >= Self.maxAddedKeys {
                var folded = metadata
                folded[key] = newValue
                metadata = folded
            } else {
                added = AddedKey(key: key, value: newValue, next: added)
            }
        }
    }

    /// Writes the event as one JSON line.
    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, new in new }
        }
        if let eventMetadata = event.metadata, !eventMetadata.isEmpty {
            merged.merge(eventMetadata) { _, new in new }
        }
        let line = Self.line(
            time: Timestamp.now,
            level: event.level,
            label: output.label,
            message: event.message.description,
            source: event.level <= .debug ? event.source : nil,
            error: event.error.map { "\($0)" },
            metadata: merged
        )
        output.sink.write(line)
    }

    /// One whole line, newline included.
    static func line(
        time: String,
        level: Logger.Level,
        label: String,
        message: String,
        source: String?,
        error: String?,
        metadata: Logger.Metadata
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + message.utf8.count + metadata.count * 32)
        out.append(contentsOf: #"{"time":""#.utf8)
        out.append(contentsOf: time.utf8)
        out.append(contentsOf: #"","level":""#.utf8)
        out.append(contentsOf: level.rawValue.utf8)
        out.append(contentsOf: #"","label":"#.utf8)
        appendString(label, to: &out)
        out.append(contentsOf: #","message":"#.utf8)
        appendString(message, to: &out)
        if let source {
            out.append(contentsOf: #","source":"#.utf8)
            appendString(source, to: &out)
        }
        if let error {
            out.append(contentsOf: #","error":"#.utf8)
            appendString(error, to: &out)
        }
        for key in metadata.keys.sorted() {
            out.append(UInt8(ascii: ","))
            appendString(reservedKeys.contains(key) ? "metadata." + key : key, to: &out)
            out.append(UInt8(ascii: ":"))
            appendValue(metadata[key]!, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    private static let reservedKeys: Set<String> = ["time", "level", "label", "message", "source", "error"]

    private static func appendValue(_ value: Logger.Metadata.Value, to out: inout [UInt8]) {
        switch value {
        case .string(let string):
            appendString(string, to: &out)
        case .stringConvertible(let convertible):
            appendString(convertible.description, to: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                appendValue(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let dictionary):
            out.append(UInt8(ascii: "{"))
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                appendValue(dictionary[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped; other UTF-8 as is.
    static func appendString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}

extension JSONLogHandler {
    /// Where lines go: a file descriptor written under a process-wide lock, or a closure (tests).
    struct LineSink: Sendable {
        private let writeLine: @Sendable ([UInt8]) -> Void

        init(_ writeLine: @escaping @Sendable ([UInt8]) -> Void) {
            self.writeLine = writeLine
        }

        func write(_ line: [UInt8]) { writeLine(line) }

        static let standardError = LineSink { line in
            outputLock.withLock { _ in writeAll(STDERR_FILENO, line) }
        }

        /// One lock for every handler, so that lines from different loggers cannot interleave.
        private static let outputLock = Mutex(())
    }
}

/// `write(2)` until the line is out (a line longer than a pipe's buffer needs several), retrying
/// on EINTR; other failures drop the line, as there is nowhere left to report them.
private func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            if written > 0 {
                offset += written
            } else if written < 0, errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}
