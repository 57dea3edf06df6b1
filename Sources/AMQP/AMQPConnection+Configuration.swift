import Foundation

extension AMQPConnection {
    /// Where and how to connect. Build it from an `amqp://` or `amqps://` URL.
    public struct Configuration: Sendable, Hashable {
        /// TLS settings for `amqps://`. The peer's certificate chain and host name are verified.
        public struct TLS: Sendable, Hashable {
            /// PEM file of the CA(s) that signed the broker's certificate; `nil` for the system's
            /// bundle (`systemCABundle`), since librabbitmq 0.11 loads no default CA paths itself.
            public var caFile: String?
            /// PEM client certificate and key, for mutual TLS.
            public var certificateFile: String?
            public var keyFile: String?
            /// Verify the chain (default on). Turning it off is insecure.
            public var verifyPeer = true
            /// Verify that the certificate names `host` (default on).
            public var verifyHostname = true

            /// The system's CA bundle: `SSL_CERT_FILE` when set (OpenSSL's own variable), else the
            /// first that exists of Debian's and Ubuntu's, Red Hat's, and Alpine's and macOS's paths.
            public static func systemCABundle(
                environment: [String: String] = ProcessInfo.processInfo.environment
            ) -> String? {
                if let file = environment["SSL_CERT_FILE"], !file.isEmpty { return file }
                return [
                    "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem",
                ].first { FileManager.default.isReadableFile(atPath: $0) }
            }

            public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
                self.caFile = caFile
                self.certificateFile = certificateFile
                self.keyFile = keyFile
            }
        }

        public var host: String = "127.0.0.1"
        public var port: Int = 5672
        public var username: String = "guest"
        public var password: String = "guest"
        public var virtualHost: String = "/"
        /// `nil` for plain TCP.
        public var tls: TLS?
        /// Heartbeat interval asked of the broker (the smaller non-zero value wins). Default 30 s.
        public var heartbeat: Duration = .seconds(30)
        /// Bounds the TCP connect, the TLS handshake and the AMQP handshake each. Default 10 s.
        public var connectTimeout: Duration = .seconds(10)
        /// Bounds every synchronous AMQP method (declare, qos, consume, …). Default 30 s.
        public var rpcTimeout: Duration = .seconds(30)
        /// 0: the broker's maximum.
        public var channelMax: Int = 0
        public var frameMax: Int = 131_072
        /// Shown in the management UI as the connection's name.
        public var connectionName: String?
        /// What `top -H`, `ps -L` and `perf` call the connection's thread (its first 15 bytes);
        /// `amqp` and the port by default.
        public var threadName: String?
        /// How long the connection's thread, woken for a few publishes while others are being
        /// made, waits for more before it sends them (zero: it sends at once). Publishes that leave
        /// together leave in one write and are confirmed together, which costs this process and
        /// the broker less per message; each waits that much longer for its confirm. Once the waits
        /// find fewer than one publish every other time on average (a lone publish, one caller
        /// publishing after another), it rests for a second (`ConnectionLoop.gatheringRest`).
        public var publishGathering: Duration = .zero
        /// Client properties the management UI shows beside `product` (which names this module and
        /// librabbitmq): conventionally `version`, `platform` and `information`.
        public var clientProperties: [String: String] = [:]

        public init() {}

        /// Parses a URL as RabbitMQ's URI specification defines it:
        /// `amqp[s]://user:password@host:port/vhost?heartbeat=30&connection_timeout=10000`.
        ///
        /// User, password and vhost are percent-decoded (`%2F` is `/`); an absent or empty vhost is
        /// `/`. `heartbeat` is in seconds, `connection_timeout` in milliseconds. `amqps` also takes
        /// `cacertfile`, `certfile`, `keyfile` and `verify=verify_none`. Errors
        /// (`AMQPError.Code.invalidURL`) say which part is wrong without quoting the URL, so they
        /// never carry its password.
        public init(url: String) throws(AMQPError) {
            self.init()
            let tlsScheme: Bool
            var rest: Substring
            if url.hasPrefix("amqps://") {
                tlsScheme = true
                rest = url.dropFirst(8)
            } else if url.hasPrefix("amqp://") {
                tlsScheme = false
                rest = url.dropFirst(7)
            } else {
                throw AMQPError(.invalidURL, "the URL must start with amqp:// or amqps://")
            }
            port = tlsScheme ? 5671 : 5672
            if tlsScheme { tls = TLS() }

            var query: Substring = ""
            if let mark = rest.firstIndex(of: "?") {
                query = rest[rest.index(after: mark)...]
                rest = rest[..<mark]
            }
            var authority = rest
            if let slash = rest.firstIndex(of: "/") {
                authority = rest[..<slash]
                let path = rest[rest.index(after: slash)...]
                if !path.isEmpty {
                    guard !path.contains("/") else {
                        throw AMQPError(.invalidURL, "the vhost must be one path segment; write / as %2F")
                    }
                    virtualHost = try Self.percentDecoded(path, "vhost")
                }
            }
            if let at = authority.lastIndex(of: "@") {
                let userInfo = authority[..<at]
                authority = authority[authority.index(after: at)...]
                if let colon = userInfo.firstIndex(of: ":") {
                    username = try Self.percentDecoded(userInfo[..<colon], "user name")
                    password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], "password")
                } else {
                    username = try Self.percentDecoded(userInfo, "user name")
                }
            }
            try parseHostAndPort(authority)
            try parseQuery(query)
        }

        private mutating func parseHostAndPort(_ authority: Substring) throws(AMQPError) {
            var hostPart = authority
            var portPart: Substring?
            if authority.hasPrefix("[") {
                guard let close = authority.firstIndex(of: "]") else {
                    throw AMQPError(.invalidURL, "unterminated IPv6 address")
                }
                hostPart = authority[authority.index(after: authority.startIndex)..<close]
                let after = authority[authority.index(after: close)...]
                if after.hasPrefix(":") { portPart = after.dropFirst() }
            } else if let colon = authority.lastIndex(of: ":") {
                hostPart = authority[..<colon]
                portPart = authority[authority.index(after: colon)...]
            }
            if !hostPart.isEmpty { host = try Self.percentDecoded(hostPart, "host") }
            if let portPart {
                guard let value = Int(portPart), (1...65535).contains(value) else {
                    throw AMQPError(.invalidURL, "the port must be a number from 1 to 65535")
                }
                port = value
            }
        }

        private mutating func parseQuery(_ query: Substring) throws(AMQPError) {
            for pair in query.split(separator: "&") where !pair.isEmpty {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = try Self.percentDecoded(parts[0], "query")
                let value = parts.count > 1 ? try Self.percentDecoded(parts[1], "query") : ""
                func integer(in range: ClosedRange<Int> = 0...Int(Int32.max)) throws(AMQPError) -> Int {
                    guard let number = Int(value), range.contains(number) else {
                        throw AMQPError(
                            .invalidURL, "\(key) must be an integer from \(range.lowerBound) to \(range.upperBound)")
                    }
                    return number
                }
                // AMQP's ranges: channel_max and heartbeat are 16-bit, and a frame is at least
                // 4096 bytes (librabbitmq takes a frame_max of 0 literally, with no room for a frame).
                switch key {
                case "heartbeat": heartbeat = .seconds(try integer(in: 0...65535))
                case "connection_timeout": connectTimeout = .milliseconds(try integer())
                case "channel_max": channelMax = try integer(in: 0...65535)
                case "frame_max": frameMax = try integer(in: 4096...Int(Int32.max))
                case "connection_name": connectionName = value
                case "cacertfile", "certfile", "keyfile", "verify":
                    guard var tls else {
                        throw AMQPError(.invalidURL, "\(key) is only meaningful with amqps://")
                    }
                    switch key {
                    case "cacertfile": tls.caFile = value
                    case "certfile": tls.certificateFile = value
                    case "keyfile": tls.keyFile = value
                    default:
                        guard value == "verify_peer" || value == "verify_none" else {
                            throw AMQPError(.invalidURL, "verify must be verify_peer or verify_none")
                        }
                        tls.verifyPeer = value == "verify_peer"
                        tls.verifyHostname = value == "verify_peer"
                    }
                    self.tls = tls
                default:
                    continue  // Unknown parameters are ignored, as other clients do.
                }
            }
        }

        /// Decodes `%XX` escapes. Errors name the `part` of the URL, never its text: it may be a password.
        static func percentDecoded(_ text: Substring, _ part: String) throws(AMQPError) -> String {
            guard text.contains("%") else { return String(text) }
            var bytes: [UInt8] = []
            var iterator = text.utf8.makeIterator()
            while let byte = iterator.next() {
                guard byte == UInt8(ascii: "%") else {
                    bytes.append(byte)
                    continue
                }
                guard let high = iterator.next().flatMap(Self.hexValue),
                    let low = iterator.next().flatMap(Self.hexValue)
                else { throw AMQPError(.invalidURL, "bad percent-encoding in the \(part)") }
                bytes.append(high << 4 | low)
            }
            guard let string = String(validating: bytes, as: UTF8.self) else {
                throw AMQPError(.invalidURL, "percent-encoding in the \(part) is not UTF-8")
            }
            return string
        }

        private static func hexValue(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
    }
}

extension AMQPConnection.Configuration: CustomStringConvertible {
    /// The URL without the password.
    public var description: String {
        let vhost = virtualHost == "/" ? "%2F" : virtualHost
        return "\(tls == nil ? "amqp" : "amqps")://\(username)@\(host):\(port)/\(vhost)"
    }
}
