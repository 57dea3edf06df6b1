import AsyncHTTPClient
import BlitlineBridge
import Glibc
import NIOCore
import Testing
import TestSupport

/// The listener under abuse (README, "HTTP listener"), in process: tokens checked before bodies,
/// slow clients cut, postbacks answered by their deadline, and every allowance bounded.
extension HTTPListenerTests {
    /// Sends a postback of `{}` with `token` on `connection` and returns what comes back, up to
    /// `marker` (or five seconds).
    static func postback(_ token: String, on connection: RawConnection, until marker: String) async throws -> String {
        connection.send("POST /postback/\(token) HTTP/1.1\r\nHost: bridge\r\nContent-Length: 2\r\n\r\n{}")
        return try await onOwnThread { connection.receive(until: marker, timeout: .seconds(5)) }
    }

    /// Sends `prefix` at once, then one byte of `trickle` every `interval`, and returns how long
    /// the server took to close the connection (`nil` if it had not within `patience`).
    static func trickle(
        port: Int, prefix: String, trickle: String, interval: Duration, patience: Duration
    ) throws -> Duration? {
        let descriptor = try #require(Ports.connectedSocket(port))
        defer { close(descriptor) }
        let started = ContinuousClock.now
        var timeout = timeval(tv_sec: 0, tv_usec: Int(interval.components.attoseconds / 1_000_000_000_000))
        if interval >= .seconds(1) { timeout = timeval(tv_sec: Int(interval.components.seconds), tv_usec: 0) }
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let head = Array(prefix.utf8)
        if !head.isEmpty { _ = Glibc.send(descriptor, head, head.count, Int32(MSG_NOSIGNAL)) }
        var bytes = Array(trickle.utf8)[...]
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now - started < patience {
            if let byte = bytes.popFirst() {
                if Glibc.send(descriptor, [byte], 1, Int32(MSG_NOSIGNAL)) < 0 { return ContinuousClock.now - started }
            }
            let count = read(descriptor, &buffer, buffer.count)
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                return ContinuousClock.now - started
            }
        }
        return nil
    }

    @Test func theListenerSettingsGiveItsLimits() throws {
        let configuration = try BridgeConfiguration(
            environment: [
                "HEALTH_ADDRESS": "[::1]:8081", "LISTEN_MAX_CONNECTIONS": "100", "LISTEN_HEADER_TIMEOUT": "2s",
                "LISTEN_BODY_TIMEOUT": "1500ms", "LISTEN_MAX_BUFFERED_BYTES": "16777216",
                "LISTEN_MAX_PENDING_POSTBACKS": "7",
            ], arguments: [])
        #expect(configuration.healthHost == "::1")
        #expect(configuration.healthPort == 8081)
        var expected = HTTPListener.Limits()
        expected.maxConnections = 100
        expected.headerTimeout = .seconds(2)
        expected.bodyTimeout = .milliseconds(1500)
        expected.maxBufferedBytes = 16 << 20
        expected.maxPendingPostbacks = 7
        #expect(configuration.listenerLimits == expected)
        #expect(BridgeConfiguration().listenerLimits == HTTPListener.Limits())
        #expect(BridgeConfiguration().healthHost == nil)
        for (variable, value) in [
            ("LISTEN_MAX_CONNECTIONS", "0"), ("LISTEN_HEADER_TIMEOUT", "0s"), ("LISTEN_MAX_BUFFERED_BYTES", "1024"),
            ("HEALTH_ADDRESS", "nowhere"),
        ] {
            #expect(throws: ConfigurationError.self, "\(variable)=\(value)") {
                try BridgeConfiguration(environment: [variable: value], arguments: [])
            }
        }
    }

    @Test func anEmptyTokenIs401() async throws {
        let receiver = FakeReceiver()
        try await withListener(receiver: receiver) { base async throws in
            #expect(try await send(.POST, "\(base)/postback/", body: Array("{}".utf8)).status == 401)
            #expect(try await send(.POST, "\(base)/postback").status == 401)
        }
        #expect(receiver.calls.isEmpty)
    }

    /// A refused token is answered at once, whatever the declared length, and the connection
    /// closes without the body: the 8 MB are never sent, let alone held.
    @Test func aRefusedTokenIsAnsweredBeforeItsBody() async throws {
        let receiver = FakeReceiver()
        try await withListenerPort(limits: Self.limits(), receiver: receiver) { port in
            for (token, status) in [("bad-token", "403"), ("", "401")] {
                let started = ContinuousClock.now
                let (response, closed) = try await onOwnThread {
                    try Self.rawExchange(
                        port: port,
                        "POST /postback/\(token) HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                            + "Content-Length: 8000000\r\n\r\n")
                }
                #expect(response.hasPrefix("HTTP/1.1 \(status)"), "\(response)")
                // No body is ever sent: an answer at all means the token was checked without it.
                #expect(closed, "the connection stayed open waiting for the body")
                #expect(ContinuousClock.now - started < .seconds(9), "answered only at the body timeout")
            }
        }
        #expect(receiver.checkedTokens == ["bad-token", ""])
        #expect(receiver.calls.isEmpty)
    }

    /// A byte every 300 ms resets no timer: the head is due within `headerTimeout` of connecting.
    @Test func aClientTricklingItsHeadIsCut() async throws {
        let limits = Self.limits { $0.headerTimeout = .seconds(1) }
        try await withListenerPort(limits: limits, receiver: FakeReceiver()) { port in
            let cut = try await onOwnThread {
                try Self.trickle(
                    port: port, prefix: "",
                    trickle: "GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: " + String(repeating: "a", count: 100),
                    interval: .milliseconds(300), patience: .seconds(8))
            }
            let elapsed = try #require(cut, "the trickling connection was never cut")
            #expect(elapsed >= .milliseconds(900))
        }
    }

    /// The next head is due `headerTimeout` after each answer, though the timer set when the
    /// connection opened fires before that.
    @Test func aKeptAliveConnectionGetsItsWholeHeaderTimeoutAfterEachAnswer() async throws {
        // Seconds apart, so that a busy machine's late wake-ups do not decide it.
        let limits = Self.limits { $0.headerTimeout = .seconds(3) }
        try await withListenerPort(limits: limits, receiver: FakeReceiver()) { port in
            let connection = try #require(RawConnection(port: port))
            defer { connection.close() }
            let probe = "GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n"
            try await Task.sleep(for: .milliseconds(1800))
            connection.send(probe)
            let first = try await onOwnThread { connection.receive(until: "ok", timeout: .seconds(5)) }
            #expect(first.hasPrefix("HTTP/1.1 200"), "\(first)")
            // Past the 3 s after connecting, 1.5 s after the answer.
            try await Task.sleep(for: .milliseconds(1500))
            connection.send(probe)
            let second = try await onOwnThread { connection.receive(until: "ok", timeout: .seconds(5)) }
            #expect(second.hasPrefix("HTTP/1.1 200"), "cut before its header timeout: \(second)")
        }
    }

    @Test func aClientTricklingItsBodyIsCut() async throws {
        let receiver = FakeReceiver()
        let limits = Self.limits { $0.bodyTimeout = .seconds(1) }
        try await withListenerPort(limits: limits, receiver: receiver) { port in
            let cut = try await onOwnThread {
                try Self.trickle(
                    port: port, prefix: "POST /postback/slow HTTP/1.1\r\nHost: bridge\r\nContent-Length: 100\r\n\r\n",
                    trickle: String(repeating: "b", count: 100), interval: .milliseconds(300), patience: .seconds(8))
            }
            let elapsed = try #require(cut, "the trickling connection was never cut")
            #expect(elapsed >= .milliseconds(900))
        }
        #expect(receiver.calls.isEmpty)
    }

    /// Handling that ignores cancellation (a publish the broker holds back) still gets its 503 at
    /// the deadline: nothing waits for it to end.
    @Test func aPostbackHeldUpIsAnswered503AtTheDeadline() async throws {
        let receiver = FakeReceiver(hang: .seconds(4))
        let limits = Self.limits { $0.postbackDeadline = .milliseconds(500) }
        try await withListener(limits: limits, receiver: receiver) { base async throws in
            let answer = try await send(.POST, "\(base)/postback/held", body: Array("{}".utf8))
            #expect(answer.status == 503)
            #expect(answer.text.contains("in time"))
            #expect(receiver.endedCount == 0, "the answer waited for the handling")
        }
    }

    /// On a keep-alive connection, the reply of a postback answered 503 at its deadline comes
    /// while the connection's next postback is in hand: it must not become that one's answer.
    @Test func aLateReplyIsNotTheAnswerToTheNextPostbackOnItsConnection() async throws {
        let receiver = FakeReceiver(hang: .milliseconds(1500))
        let limits = Self.limits { $0.postbackDeadline = .seconds(1) }
        try await withListenerPort(limits: limits, receiver: receiver) { port in
            let connection = try #require(RawConnection(port: port))
            defer { connection.close() }
            let first = try await Self.postback("first", on: connection, until: "in time")
            #expect(first.hasPrefix("HTTP/1.1 503"), "\(first)")
            // The first handling ends half a second into the second's, which hangs as long.
            let second = try await Self.postback("second", on: connection, until: "in time")
            #expect(second.hasPrefix("HTTP/1.1 503"), "\(second)")
            #expect(second.components(separatedBy: "HTTP/1.1 ").count == 2, "more than one answer: \(second)")
            #expect(await eventually(timeout: .seconds(5)) { receiver.endedCount == 2 })
            let after = try await onOwnThread { connection.receive(until: "HTTP/1.1", timeout: .milliseconds(300)) }
            #expect(after.isEmpty, "an answer nobody asked for: \(after)")
        }
        #expect(receiver.calls.map(\.token) == ["first", "second"])
    }

    /// The deadline's timer is not moved for each postback: one left by an earlier postback on the
    /// connection fires before a later one's deadline, which must still get all of its time.
    @Test func aPostbackGetsItsWholeDeadlineAfterAQuickOneOnItsConnection() async throws {
        let receiver = FakeReceiver(hang: .seconds(3), hangingTokens: "slow")
        let limits = Self.limits { $0.postbackDeadline = .seconds(1) }
        try await withListenerPort(limits: limits, receiver: receiver) { port in
            let connection = try #require(RawConnection(port: port))
            defer { connection.close() }
            let first = try await Self.postback("quick", on: connection, until: "published")
            #expect(first.hasPrefix("HTTP/1.1 200"), "\(first)")
            try await Task.sleep(for: .milliseconds(600))
            let sent = ContinuousClock.now
            let second = try await Self.postback("slow", on: connection, until: "in time")
            let waited = ContinuousClock.now - sent
            #expect(second.hasPrefix("HTTP/1.1 503"), "\(second)")
            #expect(waited >= .milliseconds(950), "answered after \(waited); its deadline was 1 s")
        }
    }

    /// Postbacks whose answer went out at the deadline still count until their handling ends;
    /// past the limit the answer is 503 at once, and the limit frees up when they end.
    @Test func postbacksInHandAreBounded() async throws {
        let receiver = FakeReceiver(hang: .seconds(2))
        let limits = Self.limits {
            $0.postbackDeadline = .milliseconds(300)
            $0.maxPendingPostbacks = 1
        }
        try await withListener(limits: limits, receiver: receiver) { base async throws in
            let first = try await send(.POST, "\(base)/postback/one", body: Array("{}".utf8))
            #expect(first.status == 503)
            let second = try await send(.POST, "\(base)/postback/two", body: Array("{}".utf8))
            #expect(second.status == 503)
            #expect(second.text.contains("too many postbacks"), "\(second.text)")
            #expect(await eventually(timeout: .seconds(10)) { receiver.endedCount == 1 })
            let third = try await send(.POST, "\(base)/postback/three", body: Array("{}".utf8))
            #expect(third.status == 503)
            #expect(third.text.contains("in time"), "\(third.text)")
        }
        #expect(receiver.calls.map(\.token) == ["one", "three"])
    }

    @Test func bytesHeldAcrossPostbacksAreBounded() async throws {
        let receiver = FakeReceiver(hang: .seconds(2))
        let limits = Self.limits {
            $0.postbackDeadline = .milliseconds(300)
            $0.maxBufferedBytes = 1000
        }
        try await withListener(limits: limits, receiver: receiver) { base async throws in
            let body = Array(repeating: UInt8(ascii: "x"), count: 800)
            #expect(try await send(.POST, "\(base)/postback/one", body: body).status == 503)
            let second = try await send(.POST, "\(base)/postback/two", body: body)
            #expect(second.status == 503)
            #expect(second.text.contains("too many postback bytes"), "\(second.text)")
            #expect(await eventually(timeout: .seconds(10)) { receiver.endedCount == 1 })
            #expect(try await send(.POST, "\(base)/postback/three", body: body).status == 503)
        }
        #expect(receiver.calls.map(\.token) == ["one", "three"])
    }

    /// With the main listener's connections all taken, probes on the probe listener still answer.
    @Test func theProbeListenerAnswersWhileTheMainOneIsFull() async throws {
        let ready = Flag()
        ready.value = true
        let limits = Self.limits { $0.maxConnections = 2 }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let (probesRunning, probes) = AsyncStream.makeStream(of: Int.self)
        // Both listeners on ports the system picks as they bind (a port picked beforehand can be
        // taken meanwhile by another test's listener).
        let listener = Self.makeListener(
            limits: limits, ready: ready, probePort: 0, ports: continuation, probesRunning: probes)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer {
                    continuation.finish()
                    probes.finish()
                }
                try await listener.run()
            }
            let port = try #require(await ports.first { _ in true })
            // On a loaded machine the probe listener may accept connections a little later.
            let probePort = try #require(await probesRunning.first { _ in true }, "the probe listener did not start")
            let held = (0..<2).compactMap { _ in Ports.connectedSocket(port) }
            defer { held.forEach { close($0) } }
            try await Task.sleep(for: .milliseconds(200))

            let probes = "http://127.0.0.1:\(probePort)"
            #expect(try await send(.GET, "\(probes)/healthz").status == 200)
            #expect(try await send(.GET, "\(probes)/readyz").status == 200)
            #expect(try await send(.GET, "\(probes)/metrics").text == Self.metrics)
            #expect(try await send(.POST, "\(probes)/postback/tok", body: Array("{}".utf8)).status == 404)

            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/healthz")
            request.method = .GET
            await #expect(throws: (any Error).self, "the main listener took a third connection") {
                _ = try await HTTPClient.toListener.execute(request, timeout: .seconds(1))
            }
            group.cancelAll()
        }
    }

    /// Past `LISTEN_MAX_CONNECTIONS` a connection waits in the kernel's accept queue, unanswered,
    /// and is served once one of the others closes.
    @Test func aConnectionPastTheLimitIsServedOnceAnotherCloses() async throws {
        try await withListenerPort(limits: Self.limits { $0.maxConnections = 2 }) { port in
            let first = try #require(RawConnection(port: port))
            let second = try #require(RawConnection(port: port))
            defer { second.close() }
            try await Task.sleep(for: .milliseconds(200))
            let third = try #require(RawConnection(port: port), "the kernel did not queue a third connection")
            defer { third.close() }
            third.send("GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
            let whileFull = try await onOwnThread { third.receive(until: "\r\n\r\n", timeout: .milliseconds(700)) }
            #expect(whileFull.isEmpty, "answered past the limit: \(whileFull)")
            first.close()
            let afterwards = try await onOwnThread { third.receive(until: "ok", timeout: .seconds(5)) }
            #expect(afterwards.hasPrefix("HTTP/1.1 200 OK"), "\(afterwards)")
        }
    }

    /// A client that sends its postback and then closes its side still gets the answer, and the
    /// connection closes after it.
    @Test func aPostbackWhoseClientClosesItsSideIsAnsweredThenClosed() async throws {
        let receiver = FakeReceiver(delay: .milliseconds(300))
        try await withListenerPort(receiver: receiver) { port in
            let connection = try #require(RawConnection(port: port))
            defer { connection.close() }
            connection.send("POST /postback/half HTTP/1.1\r\nHost: bridge\r\nContent-Length: 2\r\n\r\n{}")
            shutdown(connection.descriptor, Int32(SHUT_WR))
            let (answer, closed) = try await onOwnThread { connection.readUntilClosed(timeout: .seconds(5)) }
            #expect(answer.hasPrefix("HTTP/1.1 200 OK") && answer.hasSuffix("published"), "\(answer)")
            #expect(closed)
        }
        #expect(receiver.calls.map(\.token) == ["half"])
    }

    /// Requests a client sent behind a postback before it closed its side are answered in turn,
    /// then the connection closes.
    @Test func requestsSentBehindAPostbackBeforeTheClientClosesItsSideAreAnsweredThenClosed() async throws {
        let receiver = FakeReceiver(delay: .milliseconds(300))
        try await withListenerPort(receiver: receiver) { port in
            let connection = try #require(RawConnection(port: port))
            defer { connection.close() }
            connection.send(
                "POST /postback/first HTTP/1.1\r\nHost: bridge\r\nContent-Length: 2\r\n\r\n{}"
                    + "GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n"
                    + "POST /postback/second HTTP/1.1\r\nHost: bridge\r\nContent-Length: 2\r\n\r\n{}")
            shutdown(connection.descriptor, Int32(SHUT_WR))
            let (answers, closed) = try await onOwnThread { connection.readUntilClosed(timeout: .seconds(5)) }
            #expect(answers.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 3, "\(answers)")
            #expect(closed)
        }
        #expect(receiver.calls.map(\.token) == ["first", "second"])
    }

    /// Cancelled (the bridge's `SHUTDOWN_TIMEOUT` passed), the listener stops accepting, cuts a
    /// postback whose handling does not end a second later, and returns, long before the
    /// postback's own 8 s deadline.
    @Test func aCancelledListenerCutsWhatItStillHasAfterItsGrace() async throws {
        let receiver = FakeReceiver(hang: .seconds(20))
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let listener = Self.makeListener(receiver: receiver, ports: continuation)
        let running = Task { try await listener.run() }
        let port = try #require(await ports.first { _ in true })
        let connection = try #require(RawConnection(port: port))
        defer { connection.close() }
        connection.send("POST /postback/hanging HTTP/1.1\r\nHost: bridge\r\nContent-Length: 2\r\n\r\n{}")
        try #require(await eventually(timeout: .seconds(10)) { !receiver.calls.isEmpty }, "the postback never reached the handler")
        let cancelled = ContinuousClock.now
        running.cancel()
        _ = await running.result
        let stopped = ContinuousClock.now - cancelled
        #expect(stopped >= .milliseconds(900) && stopped < .seconds(5), "stopped \(stopped) after cancellation")
        let (answer, closed) = try await onOwnThread { connection.readUntilClosed(timeout: .seconds(2)) }
        #expect(closed && answer.isEmpty, "the connection in hand was not cut: \(answer)")
        #expect(!Self.acceptsConnections(port: port))
    }
}
