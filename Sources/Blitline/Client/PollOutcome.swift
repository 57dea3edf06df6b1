/// What one long poll of `GET {poll}/listen/{job_id}` learned.
public enum PollOutcome: Sendable, Hashable {
    /// The job has ended (successfully or not).
    case result(JobResult)
    /// Not yet: the wait timed out, the body was empty, or Blitline answered with a non-2xx
    /// status other than 429.
    case pending
    /// The poll itself failed (connection, HTTP 429 with its `Retry-After`, a body that is not a
    /// result); ask again later.
    case failed(BlitlineFailure)
}
