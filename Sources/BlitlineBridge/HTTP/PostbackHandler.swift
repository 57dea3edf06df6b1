import Blitline
import Logging
import Tracing

/// Takes Blitline's postbacks: checks the signed token (before the listener reads the body),
/// decodes the result, and publishes the event; answers 2xx only once the broker has confirmed it,
/// so that Blitline retries otherwise. A publish cut short by the listener's deadline
/// (cancellation) is a 503 like any other failure to publish.
struct PostbackHandler: PostbackReceiving, CustomStringConvertible {
    let keys: PostbackToken.Keys
    let session: BrokerSession
    let metrics: BridgeMetrics
    let logger: Logger
    var clock = WallClock.system

    /// Without the secrets.
    var description: String { "PostbackHandler(\(keys.keys.count) keys)" }

    func verify(token: Substring) -> PostbackTokenCheck<PostbackToken> {
        do {
            return .verified(try PostbackToken(verifying: token, keys: keys))
        } catch .malformed {
            metrics.postback(.unsigned)
            return .refused(PostbackReply(status: 401, message: "missing or unreadable postback signature"))
        } catch .expired {
            metrics.postback(.expired)
            logger.notice("refused an expired postback URL")
            return .refused(PostbackReply(status: 403, message: "the postback URL has expired"))
        } catch {
            metrics.postback(.forged)
            logger.warning("refused a postback with a bad signature")
            return .refused(PostbackReply(status: 403, message: "bad postback signature"))
        }
    }

    func receivePostback(_ verified: PostbackToken, body: [UInt8], contentType: String?) async -> PostbackReply {
        // A child of the request's consumer span, whose context the postback URL carries.
        await verified.context.withSpan("postback", ofKind: .server, logger: logger) { context, span, logger in
            let reply = await receive(verified, context: context, body: body, contentType: contentType, logger: &logger)
            if span.isRecording {
                span.attributes["http.response.status_code"] = reply.status
                if reply.status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            }
            return reply
        }
    }

    private func receive(
        _ verified: PostbackToken, context: RequestEnvelope, body: [UInt8], contentType: String?,
        logger: inout Logger
    ) async -> PostbackReply {
        let received = ContinuousClock.now
        let receivedAt = clock.now()
        let result: JobResult
        do {
            result = try JobResult.decode(postbackBody: body, contentType: contentType)
        } catch {
            metrics.postback(.malformed)
            logger.notice("refused a postback", metadata: ["error": "\(error)"])
            return PostbackReply(status: 400, message: "\(error)")
        }
        logger[metadataKey: "job_id"] = .string(result.jobID)
        guard let publisher = session.publisher else {
            metrics.postback(.unavailable)
            return PostbackReply(status: 503, message: "the broker is not connected; retry later")
        }
        // After the deadline a result is late, and its job gets its timeout all the same: the
        // clock decides both, so every instance decides alike (README, "Delivery guarantees").
        let late = verified.deadline.map { receivedAt > $0 } ?? false
        let event = JobEvent.result(result, context: context, via: .postback, late: late)
        do {
            // Blitline sends a result only until its retries run out: one the events exchange
            // refuses is held in the broker until the exchange takes it.
            let delivery = try await publisher.publish(event, holdingIfRefused: true) {
                metrics.postbackToEvent.record(since: received)
            }
            if delivery == .held {
                metrics.eventsHeld.increment()
                logger.warning("the events exchange refused a postback's event; it is held until the exchange takes it")
            }
        } catch where Task.isCancelled {
            // The listener's deadline passed: it has answered 503 and counted it (`timed_out`).
            return PostbackReply(status: 503, message: "the event could not be published in time; retry later")
        } catch {
            metrics.postback(.unavailable)
            logger.warning("could not publish a postback's event", metadata: ["error": "\(error)"])
            return PostbackReply(status: 503, message: "the event could not be published; retry later")
        }
        metrics.postback(.accepted)
        metrics.event(event)
        metrics.jobDuration.recordMilliseconds(clock.now() - verified.submittedAt)
        logger.debug("postback published", metadata: ["status": "\(event.status)"])
        return PostbackReply(status: 200, message: "ok")
    }
}
