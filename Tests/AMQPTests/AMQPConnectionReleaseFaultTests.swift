@testable import AMQP
import Foundation
import Testing
import TestSupport

/// A connection the application drops without closing it. Counts the process's open files, so it
/// runs alone, with the fault tests.
@Suite(.serialized) struct AMQPConnectionReleaseFaultTests {
    @Test func aConnectionDroppedWithoutCloseIsClosedAndItsThreadSocketAndPipeAreFreed() async throws {
        // A closed connection is freed too; this one also lets the process open anything it keeps
        // for good (name service files, libraries) before the files are counted.
        weak var closedLoop: ConnectionLoop?
        do {
            let connection = try await TestBroker.connect()
            closedLoop = connection.loop
            await connection.close()
        }
        #expect(await eventually { closedLoop == nil }, "a closed connection's loop was never freed")
        let filesBefore = try Self.openFiles()

        let name = TestBroker.uniqueName("dropped")
        weak var droppedLoop: ConnectionLoop?
        do {
            var configuration = try AMQPConnection.Configuration(url: TestBroker.url)
            configuration.connectionName = name
            let connection = try await AMQPConnection.connect(configuration)
            droppedLoop = connection.loop
            let channel = try await connection.openChannel()
            try await channel.declareQueue("", exclusive: true)
            #expect(try await Self.brokerLists(name))
            #expect(try Self.openFiles() >= filesBefore + 3, "a socket and a pipe")
        }

        #expect(await eventually { droppedLoop == nil }, "the dropped connection's loop was never freed")
        #expect(try await eventually { try await !Self.brokerLists(name) }, "the broker still lists the connection")
        var filesAfter = 0
        #expect(
            try await eventually {
                filesAfter = try Self.openFiles()
                return filesAfter == filesBefore
            },
            "open files: \(filesAfter), before the connection: \(filesBefore)")
    }

    /// Whether the broker lists a connection with this `connection_name`.
    static func brokerLists(_ name: String) async throws -> Bool {
        try await TestBroker.control("ctl", "list_connections", "client_properties").contains(name)
    }

    static func openFiles() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
    }
}
