import Blitline
import Foundation
import Synchronization
import Testing
import TestSupport

@testable import BlitlineBridge

#if canImport(Glibc)
    import Glibc
#endif

extension BridgeProcessTests {
    /// The bridge's listener facing the internet (README, "HTTP listener"), as a process: tokens
    /// checked before bodies, slow clients cut while probes and jobs go on, tokens that expire,
    /// and no token in the logs.
    @Suite struct BridgeListenerAbuseTests {
        static let otherSecret = "another-secret-nobody-configured-0123456789"

        /// 40 postbacks at once with garbage or foreign tokens that declare 8 MB and send only
        /// their head: each is refused within 2 s, and the bridge never holds the bodies.
        @Test func stalledUploadsWithBadTokensAreRefusedAtOnce() async throws {
            try await BridgeHarness.run("listener-stalled") { h in
                let bridge = try await h.startBridge()
                let port = bridge.settings.listenPort
                let foreign = h.postbackToken(for: "stalled", signedWith: Self.otherSecret)
                let tokens = (0..<40).map { $0.isMultiple(of: 2) ? "garbage-\($0)" : foreign }
                let sockets = try tokens.map { _ in
                    try #require(RawConnection(port: port), "cannot connect to the bridge")
                }
                defer { sockets.forEach { $0.close() } }
                let started = ContinuousClock.now
                for (socket, token) in zip(sockets, tokens) {
                    socket.send(
                        "POST /blitline/postback/\(token) HTTP/1.1\r\nHost: bridge\r\n"
                            + "Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n")
                }
                let responses = try await onOwnThread { sockets.map { $0.readUntilClosed(timeout: .seconds(5)) } }
                let statuses = responses.map { String($0.text.prefix(12)) }
                let open = responses.filter { !$0.closed }.count
                #expect(open == 0, "\(open) refused uploads' connections stayed open")
                let elapsed = ContinuousClock.now - started
                #expect(
                    statuses.allSatisfy { $0 == "HTTP/1.1 401" || $0 == "HTTP/1.1 403" }, "\(statuses)")
                #expect(elapsed < .seconds(2), "the 40 answers took \(elapsed)")
                let peak = try #require(Self.peakResidentMiB(of: bridge.processID))
                #expect(peak < 100, "the bridge's peak RSS is \(peak) MiB")
                print("listener-stalled: 40 answers in \(elapsed), bridge peak RSS \(peak) MiB")
                // Every upload above was answered before the sentinel was published.
                try await h.barrier()
                #expect(h.events.events.isEmpty)
                #expect(bridge.isRunning)
            }
        }

        /// A client that sends requests ahead and never reads the answers: once the answers it
        /// owes are not taken, the bridge reads no more of its requests, so it holds none of
        /// them in memory and the client's sends stop.
        @Test func aClientThatNeverReadsItsAnswersIsNotReadEither() async throws {
            try await BridgeHarness.run("listener-unread") { h in
                let bridge = try await h.startBridge()
                let before = try #require(Self.peakResidentMiB(of: bridge.processID))
                let socket = try #require(RawConnection(port: bridge.settings.listenPort))
                defer { socket.close() }
                // 24 MiB of requests, about a million, whose answers would take 80 MiB.
                let chunk = Array(String(repeating: "GET /healthz HTTP/1.1\r\n\r\n", count: 2_621).utf8)
                let times = (24 << 20) / chunk.count
                let sent = try await onOwnThread { socket.sendWithoutReading(chunk, times: times, timeout: .seconds(2)) }
                let peak = try #require(Self.peakResidentMiB(of: bridge.processID))
                print("listener-unread: \(sent >> 10) KiB of \((times * chunk.count) >> 10) KiB sent; bridge peak RSS \(before) → \(peak) MiB")
                #expect(sent < times * chunk.count, "the bridge read every request while its answers were not taken")
                #expect(peak < before + 24, "the bridge's peak RSS went from \(before) to \(peak) MiB")
                // The listener serves everyone else meanwhile.
                let probe = try #require(RawConnection(port: bridge.settings.listenPort))
                defer { probe.close() }
                probe.send("GET /readyz HTTP/1.1\r\nHost: bridge\r\n\r\n")
                #expect(probe.receive(until: "ready", timeout: .seconds(5)).hasPrefix("HTTP/1.1 200"))
                #expect(bridge.isRunning)
            }
        }

        /// 300 connections that send their head a byte every 2 s: probes on fresh connections
        /// answer within 1 s, a job published meanwhile completes, and every slow connection is
        /// cut by `LISTEN_HEADER_TIMEOUT`.
        @Test func slowHeadersHurtNeitherProbesNorJobs() async throws {
            try await BridgeHarness.run("listener-slow") { h in
                var settings = try h.settings()
                settings.extra["LISTEN_HEADER_TIMEOUT"] = "6s"
                let bridge = try await h.startBridge(settings)
                let slow = SlowClients(port: settings.listenPort, count: 300, interval: .seconds(2))
                try #require(slow.connected == 300, "only \(slow.connected) of 300 slow clients connected")
                slow.start()

                try await Task.sleep(for: .seconds(1))
                var probeTimes: [Duration] = []
                for path in ["/healthz", "/readyz", "/healthz", "/readyz"] {
                    let port = settings.listenPort
                    let (answer, elapsed) = try await onOwnThread {
                        let started = ContinuousClock.now
                        let connection = try #require(RawConnection(port: port))
                        connection.send("GET \(path) HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n")
                        let answer = connection.readUntilClosed(timeout: .seconds(3))
                        connection.close()
                        return (answer, ContinuousClock.now - started)
                    }
                    #expect(answer.text.hasPrefix("HTTP/1.1 200"), "\(path): \(answer.text.prefix(40))")
                    #expect(elapsed < .seconds(1), "\(path) took \(elapsed)")
                    probeTimes.append(elapsed)
                }
                let request = TestRequest.thumbnails("slow-headers-0")
                try await h.outcomes(of: [request], timeout: .seconds(30)).expectEachCompleted([request])

                let cuts = await slow.waitUntilAllCut(timeout: .seconds(20))
                #expect(cuts.count == 300, "\(300 - cuts.count) slow connections were never cut")
                let latest = cuts.max() ?? .zero
                #expect(latest < .seconds(6) + .seconds(3), "a slow connection lasted \(latest)")
                #expect((cuts.min() ?? .zero) >= .seconds(5), "a slow connection was cut early")
                print(
                    "listener-slow: probes answered in \(probeTimes), 300 slow connections cut after "
                        + "\(cuts.min() ?? .zero) to \(latest), bridge peak RSS "
                        + "\(Self.peakResidentMiB(of: bridge.processID) ?? -1) MiB")
                #expect(bridge.isRunning)
            }
        }

        /// An expired token, an empty one and one from another secret are refused; no event.
        @Test func expiredEmptyAndForeignTokensAreRefused() async throws {
            try await BridgeHarness.run("listener-tokens") { h in
                let bridge = try await h.startBridge()
                let result = TestRequest.thumbnails("token-0").postbackBody(jobID: "0tokenjobidtokenjobidt")
                let route = "/blitline/postback/"
                // The harness's bridge has JOB_TIMEOUT 60s: valid until 60 s + 24 h after submission.
                let context = RequestEnvelope(requestID: "token-0", correlationID: nil, replyTo: nil, traceparent: nil)
                let now = WallClock.system.now()
                let keys = PostbackToken.Keys(secrets: [h.secret], jobTimeout: .seconds(60))
                let lifetime = keys.validityMilliseconds
                let expired = PostbackToken(context: context, submittedAt: now - lifetime - 60_000).signed(with: keys)
                let expiredV1 = Self.versionOneToken(context: context, submittedAt: now - lifetime - 60_000, secret: h.secret)
                let foreign = h.postbackToken(for: "token-0", signedWith: Self.otherSecret)

                #expect(try await bridge.post(route + expired, body: result).status == 403)
                #expect(try await bridge.post(route + expiredV1, body: result).status == 403)
                #expect(try await bridge.post(route, body: result).status == 401)
                #expect(try await bridge.post(String(route.dropLast()), body: result).status == 401)
                #expect(try await bridge.post(route + foreign, body: result).status == 403)

                // Every refusal above was answered before the sentinel was published.
                try await h.barrier()
                #expect(h.events.events.isEmpty, "a refused postback published \(h.events.events.compactMap(\.id))")
                let metrics = try await bridge.metrics()
                #expect(metrics.value("blitline_bridge_postbacks_total", ["outcome": "expired"]) == 2)

                // Tokens in flight when the bridge was upgraded (version 1) still work until they expire.
                let current = Self.versionOneToken(context: context, submittedAt: now - 1000, secret: h.secret)
                #expect(try await bridge.post(route + current, body: result).status == 200)
                #expect(await h.events.waitForCount(1, timeout: .seconds(10)))
            }
        }

        /// At `LOG_LEVEL=trace` a job's whole life is logged, the submit body included, each line
        /// naming the request and, once it is submitted, the job; and yet no line holds its
        /// postback token.
        @Test func noLogLineHoldsAPostbackToken() async throws {
            try await BridgeHarness.run("listener-trace") { h in
                var settings = try h.settings()
                settings.extra["LOG_LEVEL"] = "trace"
                let bridge = try await h.startBridge(settings)
                let request = TestRequest.thumbnails("traced-0")
                let outcomes = try await h.outcomes(of: [request])
                outcomes.expectEachCompleted([request])
                let jobID = try #require(outcomes.single(request)?.data?["job_id"]?.stringValue)

                let lines = bridge.logLines
                #expect(lines.contains { $0.contains("submit body") }, "the submit body is not logged at trace")
                #expect(lines.contains { $0.contains("postback answered") })
                let parsed = lines.compactMap { try? JSONValue(parsing: Array($0.utf8)) }
                for message in ["submitted", "postback published"] {
                    let line = parsed.first { $0["message"]?.stringValue == message }
                    #expect(line?["request_id"]?.stringValue == request.id, "\(message): \(line.map { "\($0)" } ?? "no line")")
                    #expect(line?["job_id"]?.stringValue == jobID, "\(message): \(line.map { "\($0)" } ?? "no line")")
                }
                // Every token's payload starts with {"r": (base64url eyJyIjoi), whatever its version.
                let leaks = lines.filter { $0.contains("eyJyIjoi") || $0.contains("/postback/2.") }
                #expect(leaks.isEmpty, "log lines with a postback URL or token:\n\(leaks.prefix(3).joined(separator: "\n"))")
            }
        }

        /// A version 1 token as bridges before revision 2 signed them.
        static func versionOneToken(context: RequestEnvelope, submittedAt: Int64, secret: String) -> String {
            PostbackToken(context: context, submittedAt: submittedAt)
                .signed(with: PostbackToken.Keys(secrets: [secret]), version: 1)
        }

        /// `VmHWM` of `/proc/{pid}/status`, in MiB.
        static func peakResidentMiB(of pid: pid_t) -> Int? {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
                let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
            else { return nil }
            return kilobytes / 1024
        }
    }
}
