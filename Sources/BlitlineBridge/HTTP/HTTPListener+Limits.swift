extension HTTPListener {
    /// What the listener lets clients have, so that it stays up facing the internet. The defaults
    /// are the settings' defaults (README, "HTTP listener").
    public struct Limits: Sendable, Equatable {
        /// Connections open at once (`LISTEN_MAX_CONNECTIONS`); past it new connections wait in
        /// the kernel's accept queue until one closes. Default 512.
        public var maxConnections = 512
        /// From a connection's opening, or its previous answer, to a complete request head
        /// (`LISTEN_HEADER_TIMEOUT`); later the connection is cut. Default 10 s.
        public var headerTimeout: Duration = .seconds(10)
        /// From a request head to the end of its body (`LISTEN_BODY_TIMEOUT`); later the
        /// connection is cut. Default 10 s.
        public var bodyTimeout: Duration = .seconds(10)
        /// A larger postback body is answered 413 unread. Default 8 MiB.
        public var maxPostbackBytes = 8 << 20
        /// Postback body bytes held at once over all connections (`LISTEN_MAX_BUFFERED_BYTES`);
        /// a postback that would go past it is answered 503 (Blitline retries). Default 32 MiB.
        public var maxBufferedBytes = 32 << 20
        /// Postbacks being handled at once, including those whose answer went out at the
        /// deadline while their publish has not ended yet (`LISTEN_MAX_PENDING_POSTBACKS`); past
        /// it a postback is answered 503 at once. Default 256.
        public var maxPendingPostbacks = 256
        /// From a postback's head to its answer, at most (unless its body takes longer): past
        /// it the handling is cancelled and the answer is 503. Below the 10 s the README promises, which
        /// is below the 15 s Blitline waits.
        public var postbackDeadline: Duration = .seconds(8)
        /// Connections open at once on the separate probe listener (`HEALTH_ADDRESS`).
        public var maxProbeConnections = 64

        /// The defaults.
        public init() {}
    }
}
