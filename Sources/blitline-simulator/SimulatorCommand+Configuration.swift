import ArgumentParser
import Blitline
import BlitlineSimulator

extension SimulatorCommand {
    var simulatorConfiguration: BlitlineSimulator.Configuration {
        var faults = FaultPlan()
        faults.failSubmits = self.failSubmits
        faults.failSubmitFraction = self.failSubmitFraction
        faults.failSubmitStatus = self.failSubmitStatus
        faults.retryAfterSeconds = self.retryAfter
        faults.submitLatency = self.submitLatency
        faults.hangSubmits = self.hangSubmits
        faults.hangDuration = self.hangDuration
        faults.dropPostbacks = self.dropPostbacks
        faults.dropPostbackFraction = self.dropPostbackFraction
        faults.duplicatePostbacks = self.duplicatePostbacks
        faults.duplicatePostbackFraction = self.duplicatePostbackFraction
        faults.postbackDelay = self.postbackDelay
        var configuration = BlitlineSimulator.Configuration(
            host: self.host,
            port: self.port,
            processingDelay: self.processingDelay,
            retrySpeedFactor: self.retrySpeed,
            postbackTimeout: self.postbackTimeout,
            pollWait: self.pollWait,
            pollRate: self.pollRate,
            resultRetention: self.resultRetention,
            allowedApplicationIDs: self.applicationIDs.isEmpty ? nil : Set(self.applicationIDs),
            maxJobCharacters: self.maxJobCharacters,
            faults: faults,
            postbackRetryDelays: self.postbackRetryDelays
        )
        configuration.postbackConnections = self.postbackConnections
        configuration.freshPostbackConnections = self.freshPostbackConnections
        return configuration
    }
}

/// Parses a comma-separated list of durations, e.g. `1s,3s,15s,600s`; `none` for no retries.
func parseDurations(_ text: String) throws -> [Duration] {
    guard text != "none" else { return [] }
    return try text.split(separator: ",", omittingEmptySubsequences: false).map { item in
        try parseDuration(String(item.filter { $0 != " " }))
    }
}

/// A duration as the bridge's settings write it (``DurationText``), zero allowed: `0` is no delay.
func parseDuration(_ text: String) throws -> Duration {
    do {
        return try DurationText.parse(text, allowingZero: true)
    } catch {
        throw ValidationError("'\(text)' \(error); use 250ms, 30s, 10m, 1h or bare seconds")
    }
}
