import BlitlineBridge
import Foundation

extension CheckCommand {
    /// Who can reach a host: this machine only, a private network, or anyone (Blitline's servers).
    enum Reach: Sendable, Equatable {
        case loopback, privateNetwork, publicInternet
    }

    /// The checks that need no network: the mode, the postback settings, the application id.
    static func settingsFindings(_ configuration: BridgeConfiguration) -> [Finding] {
        guard let base = configuration.postbackBaseURL else {
            return [
                Finding(
                    .pass, "mode",
                    "polling (POSTBACK_BASE_URL unset): each job's result is long-polled at "
                        + "\(configuration.blitlinePollURL)/listen/{job_id}, at most \(configuration.pollRate.formatted(.number)) polls/s "
                        + "per application id, up to \(configuration.effectivePollConcurrency) long polls open at once"),
                applicationIDFinding(configuration),
            ]
        }
        let route = RequestProcessor.postbackURL(base: base, token: "{token}")
        var findings = [
            Finding(
                .pass, "mode",
                "postback: Blitline will POST each result to \(route), served by the listener on "
                    + "\(configuration.listenHost):\(configuration.listenPort) at \(BridgeApp.path(of: base))/postback/{token}"),
            postbackBaseFinding(configuration, base: base),
        ]
        if reach(ofURL: configuration.blitlineAPIURL) == .publicInternet, reach(ofHost: configuration.listenHost) == .loopback {
            findings.append(
                Finding(
                    .warning, "LISTEN_ADDRESS",
                    "\(configuration.listenHost) accepts connections from this machine only: Blitline reaches the "
                        + "listener only through a proxy here; 0.0.0.0 listens on every interface"))
        }
        let keys = configuration.postbackSecrets.count
        findings.append(
            keys == 0
                ? Finding(.failure, "POSTBACK_SECRET", "not set; postback mode needs it to sign postback URLs")
                : Finding(
                    .pass, "POSTBACK_SECRET",
                    "set (\(keys) key\(keys == 1 ? "" : "s"); the first signs new postback URLs, any verifies)"))
        findings.append(applicationIDFinding(configuration))
        return findings
    }

    /// Whether Blitline can post to the base URL. A loopback base is wrong only when Blitline is
    /// the real one (`BLITLINE_API_URL` public); a stand-in on this machine reaches it fine.
    private static func postbackBaseFinding(_ configuration: BridgeConfiguration, base: String) -> Finding {
        let subject = "POSTBACK_BASE_URL"
        let blitline = configuration.blitlineAPIURL
        switch (reach(ofURL: blitline) ?? .publicInternet, reach(ofURL: base) ?? .publicInternet) {
        case (.publicInternet, .loopback):
            return Finding(
                .failure, subject,
                "\(base) is a loopback address, which Blitline's servers cannot reach: set the address at which "
                    + "Blitline reaches this listener (a load balancer or an ingress), or unset it for polling mode")
        case (.publicInternet, .privateNetwork):
            return Finding(
                .warning, subject,
                "\(base) is a private address: Blitline's servers reach it only if it is forwarded from a "
                    + "public one; otherwise unset it for polling mode")
        case (.publicInternet, .publicInternet):
            return Finding(.pass, subject, "\(base) is a public address (make sure Blitline can reach it from outside)")
        case (.privateNetwork, .loopback):
            return Finding(
                .warning, subject,
                "\(base) is a loopback address: the Blitline stand-in at \(blitline) reaches it only if it runs "
                    + "on this machine")
        case (_, _):
            return Finding(.pass, subject, "\(base), reachable from the local Blitline stand-in at \(blitline)")
        }
    }

    private static func applicationIDFinding(_ configuration: BridgeConfiguration) -> Finding {
        configuration.blitlineApplicationID == nil
            ? Finding(
                .warning, "BLITLINE_APPLICATION_ID",
                "not set: every job must carry its own application_id, or it is dead-lettered as invalid")
            : Finding(.pass, "BLITLINE_APPLICATION_ID", "set; used for jobs without application_id")
    }

    /// The reach of a URL's host; `nil` when it has none.
    static func reach(ofURL url: String) -> Reach? {
        URLComponents(string: url)?.host.map(reach(ofHost:))
    }

    /// Loopback: `localhost`, 127.0.0.0/8, `::1`, 0.0.0.0. Private: RFC 1918, link-local, shared
    /// address space, IPv6 unique-local and link-local, and names no public DNS serves (one label,
    /// `.local`, `.internal`, `.lan`, `.home.arpa`, `.localdomain`).
    static func reach(ofHost host: String) -> Reach {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.hasSuffix(".") { host.removeLast() }
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" || host == "::" { return .loopback }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false).compactMap { UInt8($0) }
        if octets.count == 4, host.split(separator: ".").count == 4 {
            switch (octets[0], octets[1]) {
            case (127, _), (0, _): return .loopback
            case (10, _), (192, 168), (169, 254): return .privateNetwork
            case (172, let second) where (16...31).contains(second): return .privateNetwork
            case (100, let second) where (64...127).contains(second): return .privateNetwork
            default: return .publicInternet
            }
        }
        if host.contains(":") {
            let first = UInt16(host.prefix { $0 != ":" }, radix: 16) ?? 0
            let uniqueLocal = first & 0xfe00 == 0xfc00
            let linkLocal = first & 0xffc0 == 0xfe80
            return uniqueLocal || linkLocal ? .privateNetwork : .publicInternet
        }
        let privateSuffixes = [".local", ".internal", ".lan", ".home.arpa", ".localdomain"]
        if !host.contains(".") || privateSuffixes.contains(where: host.hasSuffix) { return .privateNetwork }
        return .publicInternet
    }
}
