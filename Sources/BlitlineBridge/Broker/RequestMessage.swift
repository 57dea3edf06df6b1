import AMQP
import Blitline

/// A request as `RequestProcessor` sees it: what arrived, and how to settle it with the broker.
protocol RequestMessage: Sendable {
    var body: [UInt8] { get }
    var properties: AMQPProperties { get }
    var redelivered: Bool { get }
    /// The body was over the consumer's limit and was not kept.
    var isBodyDiscarded: Bool { get }
    /// The body's size as the broker announced it.
    var bodySize: UInt64 { get }
    func ack()
    /// Hands the message back to its queue.
    func requeue()
    /// Refuses the message for good: the queue dead-letters it (quorum jobs queues, into `.dead`).
    func deadLetterInPlace()
}

extension RequestMessage {
    /// Settles the message by a copy in its place: `publishCopy` publishes one, and the message is
    /// acknowledged once the broker has it, or handed back itself when the broker refuses it.
    /// Returns whether the copy was taken. A copy starts afresh where handing back (`basic.nack`
    /// with requeue) counts as a delivery, as on RabbitMQ 4.0 – 4.2, whose quorum queues drop a
    /// message after 20 of them.
    @discardableResult
    func replace(by publishCopy: () async throws -> Void) async throws -> Bool {
        do {
            try await publishCopy()
        } catch where PublishFailure.isSetback(error) {
            requeue()
            return false
        }
        ack()
        return true
    }
}

extension AMQPDelivery: RequestMessage {
    func ack() { ack(multiple: false) }
    func requeue() { nack(requeue: true) }
    func deadLetterInPlace() { reject(requeue: false) }
}

/// What `RequestProcessor` needs from the broker to carry a request's steps out; `EventPublisher`
/// in the bridge. Each call returns once the broker has confirmed.
protocol RequestEffects: Sendable {
    func publish(_ event: JobEvent) async throws
    func deadLetter(_ request: RequestMessage, context: RequestEnvelope, error: String) async throws
    func putBack(_ request: RequestMessage, context: RequestEnvelope, headers: AMQPTable, delayStep: Int?) async throws
    /// The job's deadline, expiring `JOB_TIMEOUT` plus `TIMEOUT_GRACE` after its submission; or,
    /// when `due`, right away.
    func scheduleDeadline(_ job: PendingJob, due: Bool) async throws
    func schedulePoll(_ job: PendingJob, pause: Bool) async throws
}

extension EventPublisher: RequestEffects {}

/// Submits a job (of about `bytes` of JSON) to Blitline; `JobSubmitter` in the bridge.
protocol JobSubmitting: Sendable {
    func submit(_ job: BlitlineJob, bytes: Int) async -> SubmitOutcome
}

extension JobSubmitter: JobSubmitting {}

/// Whether a failed publish concerns its message alone (the broker refused, returned or could not
/// be sent that message, or closed channel after channel over it) rather than the session.
enum PublishFailure {
    static func isSetback(_ error: any Error) -> Bool {
        guard let error = error as? AMQPError else { return false }
        return [.nacked, .returned, .invalidArgument, .channelClosed].contains(error.code)
    }
}
