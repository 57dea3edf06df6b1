import Foundation
import Testing
import Yams

/// `deploy/prometheus/alerts.yaml` and `deploy/grafana/blitline-bridge.json`: they parse, each alert
/// says what to do, and every metric their expressions read is one the bridge exports.
@Suite struct DeployArtifactsTests {
    static let alerts = "deploy/prometheus/alerts.yaml"
    static let dashboard = "deploy/grafana/blitline-bridge.json"

    /// The metric names in a PromQL expression: tokens starting `blitline_bridge_` or `process_`,
    /// a histogram's `_bucket`, `_sum` and `_count` series counted as the histogram.
    static func metricNames(in expression: String) -> Set<String> {
        var names: Set<String> = []
        for match in expression.matches(of: /[A-Za-z_:][A-Za-z0-9_:]*/) {
            var name = String(match.output)
            guard name.hasPrefix("blitline_bridge_") || name.hasPrefix("process_") else { continue }
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                name.removeLast(suffix.count)
            }
            names.insert(name)
        }
        return names
    }

    /// Every alert rule of the rules file, as a node.
    static func alertRules() throws -> [Node] {
        let groups = try DeployFolder.yaml(alerts)["groups"]?.array() ?? []
        return groups.flatMap { $0["rules"]?.array() ?? [] }
    }

    static func dashboardObject() throws -> [String: Any] {
        let data = try Data(contentsOf: DeployFolder.url(dashboard))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "a JSON object expected")
    }

    /// Every string under the keys `expr` and `definition` anywhere in the dashboard: the panels'
    /// queries, the annotations' and the template variables'.
    static func dashboardExpressions() throws -> [String] {
        var expressions: [String] = []
        func collect(_ value: Any) {
            if let object = value as? [String: Any] {
                for (key, child) in object {
                    if key == "expr" || key == "definition", let text = child as? String {
                        expressions.append(text)
                    } else {
                        collect(child)
                    }
                }
            } else if let array = value as? [Any] {
                for child in array { collect(child) }
            }
        }
        collect(try dashboardObject())
        return expressions
    }

    /// Every metric the alerts and the dashboard read.
    static func artifactMetricNames() throws -> Set<String> {
        let expressions = try alertRules().compactMap { $0["expr"]?.string } + dashboardExpressions()
        return expressions.reduce(into: Set<String>()) { $0.formUnion(metricNames(in: $1)) }
    }

    /// The anchors GitHub gives the README's headings.
    static func readmeAnchors() throws -> Set<String> {
        var anchors: Set<String> = []
        for line in try DeployFolder.text("README.md").split(separator: "\n") where line.hasPrefix("#") {
            let title = line.drop(while: { $0 == "#" }).drop(while: { $0 == " " })
            let kept = title.lowercased().filter { $0.isLetter || $0.isNumber || $0 == " " || $0 == "-" || $0 == "_" }
            anchors.insert(String(kept.map { $0 == " " ? "-" : $0 }))
        }
        return anchors
    }

    @Test func metricNamesAreReadAsTheArtifactsWriteThem() {
        // Guards the extraction the other checks rely on.
        let expression = """
            histogram_quantile(0.99, sum by (le) (rate(blitline_bridge_postback_to_event_seconds_bucket{job=~"$job"}[$__rate_interval])))
            / process_resident_memory_bytes and up == 0
            """
        #expect(Self.metricNames(in: expression) == [
            "blitline_bridge_postback_to_event_seconds", "process_resident_memory_bytes",
        ])
    }

    @Test func everyAlertSaysHowBadWhatAndWhereToRead() throws {
        let rules = try Self.alertRules()
        #expect(rules.count >= 10, "the alert rules were not found")
        let anchors = try Self.readmeAnchors()
        var names: Set<String> = []
        for rule in rules {
            let name = try #require(rule["alert"]?.string, "a rule of \(Self.alerts) is no alert")
            #expect(names.insert(name).inserted, "\(name) twice")
            let expression = rule["expr"]?.string ?? ""
            #expect(!expression.isEmpty, "\(name): no expr")
            let severity = rule[path: "labels", "severity"]?.string ?? ""
            #expect(["critical", "warning"].contains(severity), "\(name): severity \(severity)")
            for annotation in ["summary", "description"] {
                let text = rule[path: "annotations", annotation]?.string ?? ""
                #expect(!text.isEmpty, "\(name): \(annotation)")
            }
            let runbook = rule[path: "annotations", "runbook"]?.string ?? ""
            #expect(runbook.hasPrefix("README.md#"), "\(name): runbook should point into the README")
            let anchor = String(runbook.dropFirst("README.md#".count))
            #expect(anchors.contains(anchor), "\(name): the README has no section #\(anchor)")
        }
    }

    @Test func dashboardReadsThroughItsDataSourceVariable() throws {
        let dashboard = try Self.dashboardObject()
        #expect((dashboard["schemaVersion"] as? Int ?? 0) >= 36)
        let templating = dashboard["templating"] as? [String: Any]
        let variables = templating?["list"] as? [[String: Any]] ?? []
        let source = try #require(variables.first { $0["name"] as? String == "datasource" })
        #expect(source["type"] as? String == "datasource")
        #expect(source["query"] as? String == "prometheus")
        for name in ["job", "instance"] {
            #expect(variables.contains { $0["name"] as? String == name }, "no $\(name) variable")
        }
        let panels = dashboard["panels"] as? [[String: Any]] ?? []
        #expect(panels.count >= 10)
        for panel in panels where panel["type"] as? String != "row" {
            let title = panel["title"] as? String ?? "?"
            let uid = (panel["datasource"] as? [String: Any])?["uid"] as? String
            #expect(uid == "${datasource}", "\(title): the panel's data source should be ${datasource}")
            let targets = panel["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty, "\(title): no query")
            for target in targets {
                let targetUID = (target["datasource"] as? [String: Any])?["uid"] as? String
                #expect(targetUID == "${datasource}", "\(title): a query's data source should be ${datasource}")
            }
        }
    }

    /// The bridge's own metrics are all on the dashboard (of the standard process metrics, those
    /// worth a panel: CPU, memory, file descriptors, start time).
    @Test func everyMetricTheArtifactsReadIsExportedAndTheDashboardShowsThem() async throws {
        let exported = try await RunningBridge.exportedMetricNames()
        #expect(exported.contains("blitline_bridge_requests_received_total"), "the bridge's /metrics was not read")
        let missing = try Self.artifactMetricNames().subtracting(exported)
        #expect(missing.isEmpty, "read by the alerts or the dashboard but not exported: \(missing.sorted())")
        let shown = try Self.dashboardExpressions()
            .reduce(into: Set<String>()) { $0.formUnion(Self.metricNames(in: $1)) }
        let worthAPanel = exported.filter { $0.hasPrefix("blitline_bridge_") }.union([
            "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds",
        ])
        #expect(worthAPanel.subtracting(shown).isEmpty, "exported but on no panel: \(worthAPanel.subtracting(shown).sorted())")
    }
}
