/// The nodes of one RabbitMQ cluster, from a comma-separated list of URLs (`AMQP_URL`), and the
/// order in which to try them.
///
/// `next()` starts at a random node and moves to the following one on each call, so a fleet of
/// workers spreads over the cluster, and a worker whose node failed tries another one next.
public struct AMQPEndpoints: Sendable, Hashable {
    /// Every node, in the order given.
    public private(set) var configurations: [AMQPConnection.Configuration]
    private var index: Int

    /// Parses `urls`: `amqp://` or `amqps://` URLs separated by commas, spaces around them
    /// ignored. Throws `AMQPError.Code.invalidURL` for an empty list or an empty entry, or naming
    /// the position (1-based) of a URL that does not parse; no error ever quotes a URL, so none
    /// carries a password.
    public init(urls: String) throws(AMQPError) {
        let entries = urls.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingSpaces }
        guard entries.contains(where: { !$0.isEmpty }) else {
            throw AMQPError(.invalidURL, "no AMQP URL given")
        }
        var configurations: [AMQPConnection.Configuration] = []
        for (position, entry) in entries.enumerated() {
            let place = "URL \(position + 1) of \(entries.count)"
            guard !entry.isEmpty else { throw AMQPError(.invalidURL, "\(place) is empty") }
            do throws(AMQPError) {
                configurations.append(try AMQPConnection.Configuration(url: String(entry)))
            } catch {
                throw AMQPError(.invalidURL, "\(place): \(error.replyText)")
            }
        }
        self.init(configurations, start: Int.random(in: 0..<configurations.count))
    }

    /// The given nodes (at least one), `next()` starting with the one at `start` (wrapped into
    /// range).
    public init(_ configurations: [AMQPConnection.Configuration], start: Int = 0) {
        precondition(!configurations.isEmpty, "AMQPEndpoints needs at least one node")
        self.configurations = configurations
        self.index = (start % configurations.count + configurations.count) % configurations.count
    }

    /// The node to connect to now; each call moves on to the following node, wrapping around.
    public mutating func next() -> AMQPConnection.Configuration {
        let configuration = configurations[index]
        index = (index + 1) % configurations.count
        return configuration
    }
}

extension AMQPEndpoints: CustomStringConvertible {
    /// The URLs without their passwords.
    public var description: String {
        configurations.map(\.description).joined(separator: ",")
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return self[endIndex...]
        }
        return self[first...last]
    }
}
