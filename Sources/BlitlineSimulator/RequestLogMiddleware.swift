import Hummingbird
import Logging

/// Logs each request in one line: method, path, status and duration.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            self.log(request, status: Int(response.status.code), started: started)
            return response
        } catch let error as any HTTPResponseError {
            self.log(request, status: Int(error.status.code), started: started)
            throw error
        } catch {
            self.log(request, status: 500, started: started)
            throw error
        }
    }

    private func log(_ request: Request, status: Int, started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        let milliseconds = Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000
            + Double(elapsed.components.seconds) * 1000
        self.logger.info("\(request.method) \(request.uri.path) \(status) \(milliseconds)ms")
    }
}
