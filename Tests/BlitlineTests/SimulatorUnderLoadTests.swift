import Blitline
import BlitlineSimulator
import Testing

/// The simulator under the load the bridge's tests and benchmark put on it: nothing is lost or
/// posted back twice. (Its speed is measured by `deploy/bench.sh`, not here.)
@Suite("Simulator under load")
struct SimulatorUnderLoadTests {
    @Test("2,000 jobs submitted 32 at a time are all accepted and posted back exactly once")
    func manyJobs() async throws {
        let receiver = PostbackReceiver()
        try await receiver.serve { url in
            try await withSimulator { client, port in
                let accepted = await withTaskGroup(of: Int.self) { group in
                    for worker in 0..<32 {
                        group.addTask {
                            var count = 0
                            for index in stride(from: worker, to: 2_000, by: 32) {
                                let outcome = await client.submit(job(#","postback_url":"\#(url)","n":\#(index)"#))
                                if case .accepted = outcome { count += 1 }
                            }
                            return count
                        }
                    }
                    return await group.reduce(0, +)
                }
                #expect(accepted == 2_000)
                try await receiver.waitFor(2_000, timeout: .seconds(30))
                let ids = try receiver.requests.map { try JobResult.decode(postbackBody: $0.body, contentType: $0.contentType).jobID }
                #expect(ids.count == 2_000 && Set(ids).count == 2_000)
                #expect(try await stats(port)["postbacks_acknowledged"] == .number(2_000))
            }
        }
    }
}
