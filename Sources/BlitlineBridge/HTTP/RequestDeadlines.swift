/// When a connection must have sent what: a request head within `headerTimeout` of the
/// connection opening (or of the previous answer), and the whole body within `bodyTimeout` of
/// the head. Past either the connection is cut, however steadily a client trickles bytes: an idle
/// timer that any byte resets would let a client sending one byte every 25 s stay forever.
///
/// A plain state machine: each event returns what the ``HTTPConnectionHandler`` must do with its
/// one timer.
struct RequestDeadlines: Sendable {
    /// What the channel handler does after an event.
    enum Action: Equatable, Sendable {
        /// Cancel any timer and cut the connection when this much time has passed.
        case arm(Duration, Phase)
        /// Cancel the timer: the client owes nothing now (the server is answering).
        case disarm
        /// Leave the timer as it is.
        case keep
    }

    /// What the client is late with when the timer fires.
    enum Phase: Equatable, Sendable {
        case head
        case body
    }

    let headerTimeout: Duration
    let bodyTimeout: Duration
    private var reading: Phase? = .head
    private var answersOwed = 0

    init(headerTimeout: Duration, bodyTimeout: Duration) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
    }

    /// The connection is open: its first head is due.
    func connectionOpened() -> Action { .arm(headerTimeout, .head) }

    /// A request head arrived: its body is due.
    mutating func headReceived() -> Action {
        reading = .body
        answersOwed += 1
        return .arm(bodyTimeout, .body)
    }

    /// A request's body ended: the next head is due once every answer is written.
    mutating func bodyEnded() -> Action {
        reading = nil
        guard answersOwed == 0 else { return .disarm }
        reading = .head
        return .arm(headerTimeout, .head)
    }

    /// An answer was written in full. An answer written before its body ended (a refusal) keeps
    /// the body's deadline running.
    mutating func answerWritten() -> Action {
        answersOwed = max(0, answersOwed - 1)
        guard reading == nil, answersOwed == 0 else { return .keep }
        reading = .head
        return .arm(headerTimeout, .head)
    }
}
