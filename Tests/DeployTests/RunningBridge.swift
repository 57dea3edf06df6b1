import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TestSupport

/// A `blitline-bridge` process (`BLITLINE_BRIDGE_BIN`, which deploy/test.sh builds) started with a
/// broker that cannot be reached, for what it serves before any broker answers: `/metrics`.
enum RunningBridge {
    /// The name of every metric the bridge's `/metrics` declares (`# TYPE <name> <kind>`).
    static func exportedMetricNames() async throws -> Set<String> {
        let binary = try #require(
            ProcessInfo.processInfo.environment["BLITLINE_BRIDGE_BIN"],
            "BLITLINE_BRIDGE_BIN is not set: run the tests with deploy/test.sh, which builds the bridge")
        let port = try Ports.free()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.environment = [
            "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F", "BLITLINE_APPLICATION_ID": "deploy-tests",
            "POSTBACK_BASE_URL": "http://127.0.0.1:\(port)", "LISTEN_ADDRESS": "127.0.0.1:\(port)",
            "POSTBACK_SECRET": "deploy-tests-secret-deploy-tests-secret", "LOG_LEVEL": "error",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let url = try #require(URL(string: "http://127.0.0.1:\(port)/metrics"))
        for _ in 0..<300 {
            if let (data, response) = try? await URLSession.shared.data(from: url),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                let text = String(decoding: data, as: UTF8.self)
                return Set(text.split(separator: "\n").compactMap { line in
                    let words = line.split(separator: " ")
                    return words.count == 4 && words[0] == "#" && words[1] == "TYPE" ? String(words[2]) : nil
                })
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the bridge served no /metrics on port \(port) (exit status \(process.isRunning ? "none yet" : "\(process.terminationStatus)"))")
        return []
    }
}
