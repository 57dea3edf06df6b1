import AMQP
import Testing

@Suite struct AMQPEndpointsTests {
    @Test func parsesACommaSeparatedListIgnoringSpaces() throws {
        let endpoints = try AMQPEndpoints(urls: " amqp://u:p@node-a:5672/vh ,amqps://u:p@node-b , amqp://node-c:5680")
        #expect(endpoints.configurations.map(\.host) == ["node-a", "node-b", "node-c"])
        #expect(endpoints.configurations.map(\.port) == [5672, 5671, 5680])
        #expect(endpoints.configurations[1].tls != nil)
        #expect(!"\(endpoints)".contains(":p@"))
    }

    @Test func nextStartsAnywhereAndVisitsEveryNodeInTurn() throws {
        let urls = (1...4).map { "amqp://node-\($0)" }.joined(separator: ",")
        var firsts = Set<String>()
        for _ in 0..<200 {
            var endpoints = try AMQPEndpoints(urls: urls)
            let order = (0..<8).map { _ in endpoints.next().host }
            firsts.insert(order[0])
            let start = Int(order[0].dropFirst(5))!
            #expect(order == (0..<8).map { "node-\(($0 + start - 1) % 4 + 1)" })
        }
        // 200 random starts over 4 nodes: missing one has a probability of about 4 × 0.75^200.
        #expect(firsts.count == 4)
    }

    @Test func aSingleURLIsAListOfOne() throws {
        var endpoints = try AMQPEndpoints(urls: "amqp://guest:guest@127.0.0.1:5672/%2F")
        let first = endpoints.next()
        #expect(endpoints.next() == first)
    }

    @Test(arguments: ["", " ", " , ", "amqp://a,,amqp://b", "amqp://a,"])
    func refusesEmptyListsAndEntries(urls: String) {
        #expect(throws: AMQPError.self) { try AMQPEndpoints(urls: urls) }
    }

    @Test func anErrorNamesThePositionOfTheBadURL() {
        let error = #expect(throws: AMQPError.self) {
            try AMQPEndpoints(urls: "amqp://a, amqp://b:99999, amqp://c")
        }
        #expect(error?.code == .invalidURL)
        #expect(error?.replyText.hasPrefix("URL 2 of 3") == true, "\(String(describing: error))")
    }

    static let password = "S3cr%zz/?#@:é,;x"

    /// URLs holding a password with characters that break parsing in every place they can.
    @Test(arguments: [
        "amqp://user:\(password)@host/vh",
        "amqp://user:S3cr%zz@host/vh",
        "amqp://user:S3cr%C3@host",
        "amqp://user:S3cr/et@host:5672/vh",
        "amqp://user:S3cr?heartbeat=S3cr@host",
        "amqp://user:S3cr:et@host:notaport",
        "amqp://user:S3cr@[::1/vh",
        "http://user:S3cr@host",
        "amqp://user:S3cr@host?heartbeat=S3cr",
        "amqp://ok@host, amqp://user:S3cr%zz@host",
    ])
    func noErrorEverCarriesThePassword(url: String) {
        let error = #expect(throws: AMQPError.self) { try AMQPEndpoints(urls: url) }
        #expect(error.map { !"\($0)".contains("S3cr") } == true, "\(String(describing: error))")
        let single = #expect(throws: AMQPError.self) { try AMQPConnection.Configuration(url: url) }
        #expect(single.map { !"\($0)".contains("S3cr") } == true, "\(String(describing: single))")
    }
}
