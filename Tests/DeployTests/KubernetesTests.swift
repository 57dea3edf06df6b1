import BlitlineBridge
import Foundation
import Testing
import Yams

/// `deploy/kubernetes/`: each manifest's kind, and the references between them and to the bridge's
/// settings, listener and shutdown limit; the optional components (KEDA, the ServiceMonitor).
@Suite struct KubernetesTests {
    static let folder = "deploy/kubernetes"
    /// Every YAML file of the folder and its components → (apiVersion, kind).
    static let manifests: [String: (apiVersion: String, kind: String)] = [
        "secret.yaml": ("v1", "Secret"),
        "deployment.yaml": ("apps/v1", "Deployment"),
        "service.yaml": ("v1", "Service"),
        "pdb.yaml": ("policy/v1", "PodDisruptionBudget"),
        "hpa.yaml": ("autoscaling/v2", "HorizontalPodAutoscaler"),
        "ingress.yaml": ("networking.k8s.io/v1", "Ingress"),
        "networkpolicy.yaml": ("networking.k8s.io/v1", "NetworkPolicy"),
        "kustomization.yaml": ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
        "keda/kustomization.yaml": ("kustomize.config.k8s.io/v1alpha1", "Component"),
        "keda/scaledobject.yaml": ("keda.sh/v1alpha1", "ScaledObject"),
        "keda/triggerauthentication.yaml": ("keda.sh/v1alpha1", "TriggerAuthentication"),
        "monitoring/kustomization.yaml": ("kustomize.config.k8s.io/v1alpha1", "Component"),
        "monitoring/servicemonitor.yaml": ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ]
    /// What `kubectl apply -k deploy/kubernetes` applies, besides the generated ConfigMap. The
    /// Secret is a template the operator creates: applied from here it would overwrite a real one.
    static let baseResources: Set<String> = [
        "deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml", "ingress.yaml", "networkpolicy.yaml",
    ]
    static let components = ["keda", "monitoring"]
    /// The configMapGenerator's source.
    static let envFile = "blitline-bridge.env"
    /// The labels selectors use: written in every file, and never changing between releases.
    static let stableLabels = [
        "app.kubernetes.io/name": "blitline-bridge",
        "app.kubernetes.io/instance": "blitline-bridge",
    ]

    let configText: String
    let secret: Node
    let deployment: Node
    let service: Node
    let budget: Node
    let autoscaler: Node
    let ingress: Node
    let networkPolicy: Node
    let kustomization: Node
    let scaledObject: Node
    let triggerAuthentication: Node
    let serviceMonitor: Node

    init() throws {
        func load(_ file: String) throws -> Node { try DeployFolder.yaml("\(Self.folder)/\(file)") }
        configText = try DeployFolder.text("\(Self.folder)/\(Self.envFile)")
        secret = try load("secret.yaml")
        deployment = try load("deployment.yaml")
        service = try load("service.yaml")
        budget = try load("pdb.yaml")
        autoscaler = try load("hpa.yaml")
        ingress = try load("ingress.yaml")
        networkPolicy = try load("networkpolicy.yaml")
        kustomization = try load("kustomization.yaml")
        scaledObject = try load("keda/scaledobject.yaml")
        triggerAuthentication = try load("keda/triggerauthentication.yaml")
        serviceMonitor = try load("monitoring/servicemonitor.yaml")
    }

    /// The lines of an env file that kustomize's configMapGenerator reads as `KEY=value` (the value
    /// as it stands, quotes and spaces included): those neither blank nor starting with `#`.
    static func envFileLines(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { line in
            let start = line.drop(while: { $0 == " " || $0 == "\t" })
            return !start.isEmpty && !start.hasPrefix("#")
        }
    }

    /// The generated ConfigMap's data.
    var configData: [String: String] {
        var data: [String: String] = [:]
        for line in Self.envFileLines(configText) {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            data[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return data
    }

    var secretValues: [String: String] { secret["stringData"]?.stringPairs ?? [:] }

    var podSpec: Node? { deployment[path: "spec", "template", "spec"] }

    func container() throws -> Node {
        let containers = podSpec?["containers"]?.array() ?? []
        try #require(containers.count == 1, "one container expected")
        return containers[0]
    }

    /// The container's own variables (`env:`), each a plain value.
    func containerVariables() throws -> [(name: String, value: String)] {
        var variables: [(name: String, value: String)] = []
        for variable in try container()["env"]?.array() ?? [] {
            let name = try #require(variable["name"]?.string)
            let value = try #require(variable["value"]?.string, "\(name) should be a plain value")
            variables.append((name: name, value: value))
        }
        return variables
    }

    /// Where the container mounts the Secret's volume.
    func secretMountPath() throws -> String {
        let secretName = try #require(secret[path: "metadata", "name"]?.string)
        let volumes = podSpec?["volumes"]?.array() ?? []
        let volume = try #require(
            volumes.first { $0[path: "secret", "secretName"]?.string == secretName }, "no volume of the Secret")
        let volumeName = try #require(volume["name"]?.string)
        let mounts = try container()["volumeMounts"]?.array() ?? []
        let mount = try #require(mounts.first { $0["name"]?.string == volumeName }, "the Secret's volume is not mounted")
        return try #require(mount["mountPath"]?.string)
    }

    /// What the bridge reads at start in the pod: the ConfigMap's data and the container's own
    /// variables, with each `*_FILE` that names a file of the Secret replaced by the variable it
    /// stands for, holding that file's content (as the bridge reads it).
    func podEnvironment() throws -> [String: String] {
        var environment = configData
        let mountPath = try secretMountPath()
        for (name, value) in try containerVariables() {
            if name.hasSuffix("_FILE"), value.hasPrefix(mountPath + "/") {
                let key = String(value.dropFirst(mountPath.count + 1))
                let secretValue = try #require(secretValues[key], "\(value) is no key of the Secret")
                environment[String(name.dropLast("_FILE".count))] = secretValue
            } else {
                environment[name] = value
            }
        }
        return environment
    }

    func podLabels() -> [String: String] {
        deployment[path: "spec", "template", "metadata", "labels"]?.stringPairs ?? [:]
    }

    func selects(_ selector: [String: String]) -> Bool {
        !selector.isEmpty && selector.allSatisfy { podLabels()[$0.key] == $0.value }
    }

    @Test func eachFileIsOneObjectOfItsKind() throws {
        for (file, expected) in Self.manifests {
            let node = try DeployFolder.yaml("\(Self.folder)/\(file)")
            #expect(node["apiVersion"]?.string == expected.apiVersion, "\(file)")
            #expect(node["kind"]?.string == expected.kind, "\(file)")
            if expected.kind != "Kustomization", expected.kind != "Component" {
                #expect(node[path: "metadata", "name"]?.string == "blitline-bridge", "\(file)")
            }
        }
    }

    @Test func kustomizationAppliesTheBaseAndOffersTheComponents() throws {
        let resources = Set(kustomization["resources"]?.array().compactMap(\.string) ?? [])
        #expect(resources == Self.baseResources)
        let onDisk = DeployFolder.yamlFiles().filter { $0.hasPrefix(Self.folder + "/") }
            .map { String($0.dropFirst(Self.folder.count + 1)) }
        #expect(Set(onDisk) == Set(Self.manifests.keys), "a manifest this test does not know")
        // Offered commented out, so that a cluster without KEDA or the Prometheus operator applies
        // the base as it is.
        #expect(kustomization["components"] == nil)
        let text = try DeployFolder.text("\(Self.folder)/kustomization.yaml")
        #expect(text.contains("# components:\n"))
        for component in Self.components {
            #expect(text.contains("#   - \(component)\n"), "kustomization.yaml should offer \(component)")
            let node = try DeployFolder.yaml("\(Self.folder)/\(component)/kustomization.yaml")
            for file in node["resources"]?.array().compactMap(\.string) ?? [] {
                #expect(Self.manifests["\(component)/\(file)"] != nil, "\(component)/\(file)")
            }
        }
    }

    @Test func theImageIsARelease() throws {
        let image = try #require(try container()["image"]?.string)
        let images = kustomization["images"]?.array() ?? []
        let entry = try #require(
            images.first { $0["name"]?.string == image }, "kustomization.yaml's images: should name the Deployment's image")
        let tag = try #require(entry["newTag"]?.string)
        #expect(entry["newTag"]?.isString == true, "quote the tag: YAML reads 1.10 as a number")
        #expect(!tag.isEmpty && tag != "latest", "a tag names one image only if it is a release")
        // The release this tree builds: the tag and labels stayed at 0.2.13 through three releases.
        #expect(tag == BridgeVersion.current, "newTag should be this tree's version, \(BridgeVersion.current)")
    }

    @Test func everyObjectCarriesTheRecommendedLabelsAndSelectorsOnlyTheStableOnes() throws {
        for (file, expected) in Self.manifests where expected.kind != "Kustomization" && expected.kind != "Component" {
            let labels = try DeployFolder.yaml("\(Self.folder)/\(file)")[path: "metadata", "labels"]?.stringPairs ?? [:]
            for (key, value) in Self.stableLabels {
                #expect(labels[key] == value, "\(file): \(key)")
            }
            #expect(labels["app.kubernetes.io/component"] != nil, "\(file): app.kubernetes.io/component")
        }
        for (key, value) in Self.stableLabels {
            #expect(podLabels()[key] == value, "the pod template: \(key)")
        }
        let generated = try #require(kustomization["configMapGenerator"]?.array().first)
        let generatedLabels = generated[path: "options", "labels"]?.stringPairs ?? [:]
        for (key, value) in Self.stableLabels {
            #expect(generatedLabels[key] == value, "the generated ConfigMap: \(key)")
        }

        // The release labels come from kustomization.yaml, onto every object (components' included)
        // and the pod template, never onto selectors, and follow the image's tag.
        let groups = kustomization["labels"]?.array() ?? []
        #expect(groups.count == 1)
        let group = try #require(groups.first)
        #expect(group["includeSelectors"]?.bool != true, "a selector cannot change once applied")
        #expect(group["includeTemplates"]?.bool == true, "the pods should carry the release labels too")
        let pairs = group["pairs"]?.stringPairs ?? [:]
        let release: Set<String> = ["app.kubernetes.io/version", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"]
        #expect(Set(pairs.keys) == release)
        #expect(pairs["app.kubernetes.io/managed-by"] == "kustomize")
        let image = try #require(try container()["image"]?.string)
        let entry = try #require(kustomization["images"]?.array().first { $0["name"]?.string == image })
        #expect(pairs["app.kubernetes.io/version"] == entry["newTag"]?.string)

        let selectors: [(String, [String: String])] = [
            ("deployment.yaml", deployment[path: "spec", "selector", "matchLabels"]?.stringPairs ?? [:]),
            ("service.yaml", service[path: "spec", "selector"]?.stringPairs ?? [:]),
            ("pdb.yaml", budget[path: "spec", "selector", "matchLabels"]?.stringPairs ?? [:]),
            ("networkpolicy.yaml", networkPolicy[path: "spec", "podSelector", "matchLabels"]?.stringPairs ?? [:]),
            ("monitoring/servicemonitor.yaml", serviceMonitor[path: "spec", "selector", "matchLabels"]?.stringPairs ?? [:]),
        ]
        for (file, selector) in selectors {
            #expect(selector == Self.stableLabels, "\(file): select by name and instance only")
        }
    }

    @Test func envFileHoldsEveryOtherSettingAtItsDefault() throws {
        let generators = kustomization["configMapGenerator"]?.array() ?? []
        #expect(generators.count == 1)
        let generator = try #require(generators.first)
        #expect(generator["name"]?.string == "blitline-bridge")
        #expect(generator["envs"]?.array().compactMap(\.string) == [Self.envFile])
        var names: [String] = []
        for line in Self.envFileLines(configText) {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let value = parts.count > 1 ? String(parts[1]) : ""
            names.append(name)
            // A bare KEY would be taken from the environment of whoever runs kustomize.
            #expect(parts.count == 2, "\(line): KEY=value expected")
            #expect(BridgeSettings.names.contains(name), "\(name) is no setting of the bridge")
            #expect(value.trimmingCharacters(in: .whitespaces) == value, "\(name): kustomize keeps the spaces")
            #expect(!value.hasPrefix("\"") && !value.hasPrefix("'"), "\(name): kustomize keeps the quotes")
            // A value differs from the default only where there is none to state (an example).
            if let defaultValue = BridgeSettings.defaults[name], let defaultValue {
                #expect(value == defaultValue, "\(name): the default is \(defaultValue)")
            }
        }
        #expect(Set(names).count == names.count, "a setting named twice")
        let secretKeys = Set(secretValues.keys)
        let fileVariables = Set(secretKeys.map { $0 + "_FILE" })
        #expect(Set(names).isDisjoint(with: secretKeys.union(fileVariables)))
        #expect(
            Set(names).union(secretKeys).union(fileVariables) == BridgeSettings.names,
            "every setting in the env file, or a secret read from the Secret's file")
    }

    @Test func secretIsATemplateOfPlaceholders() {
        #expect(secret["type"]?.string == "Opaque")
        #expect(Set(secretValues.keys) == ["AMQP_URL", "BLITLINE_APPLICATION_ID", "POSTBACK_SECRET"])
        for (name, value) in secretValues {
            #expect(value.contains("REPLACE_ME"), "\(name) should be a placeholder marked REPLACE_ME")
        }
    }

    @Test func configMapAndSecretMakeAValidPostbackConfiguration() throws {
        let configuration = try BridgeSettings.configuration(try podEnvironment())
        #expect(configuration.usesPostbacks)
        #expect(configuration.blitlineApplicationID != nil)
    }

    @Test func deploymentTakesTheConfigMapAndReadsTheSecretAsFiles() throws {
        let pod = try container()
        let sources = pod["envFrom"]?.array() ?? []
        let generated = try #require(kustomization["configMapGenerator"]?.array().first?["name"]?.string)
        #expect(sources.compactMap { $0[path: "configMapRef", "name"]?.string } == [generated])
        #expect(pod["env"]?.array().allSatisfy { $0["valueFrom"] == nil } == true, "no secret in a variable")

        let mountPath = try secretMountPath()
        var readFromFiles: Set<String> = []
        for (name, value) in try containerVariables() {
            #expect(BridgeSettings.names.contains(name), "\(name) is no setting of the bridge")
            #expect(name.hasSuffix("_FILE"), "\(name): the container's variables only name the Secret's files")
            let key = String(name.dropLast("_FILE".count))
            #expect(value == "\(mountPath)/\(key)", "\(name) should name the Secret's file \(key)")
            readFromFiles.insert(key)
        }
        #expect(readFromFiles == Set(secretValues.keys))

        // Read-only, and readable by the image's user through its group alone.
        let mounts = pod["volumeMounts"]?.array() ?? []
        #expect(mounts.first { $0["mountPath"]?.string == mountPath }?["readOnly"]?.bool == true)
        let volume = podSpec?["volumes"]?.array().first { $0["secret"] != nil }
        #expect(volume?[path: "secret", "defaultMode"]?.int == 0o440)
        let security = podSpec?["securityContext"]
        #expect(security?["fsGroup"]?.int != nil && security?["fsGroup"]?.int == security?["runAsGroup"]?.int)
    }

    @Test func theBridgeReadsTheSecretsFilesAndRefusesThePlaceholders() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("kubernetes-secret-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let mountPath = try secretMountPath()

        /// The pod's environment with the Secret's files written under `directory`.
        func environment(replacingPlaceholders: Bool) throws -> [String: String] {
            var environment = configData
            for (name, value) in try containerVariables() {
                guard value.hasPrefix(mountPath + "/") else {
                    environment[name] = value
                    continue
                }
                let key = String(value.dropFirst(mountPath.count + 1))
                var content = try #require(secretValues[key])
                if replacingPlaceholders {
                    content = content.replacingOccurrences(of: "REPLACE_ME", with: "real-value")
                }
                let file = directory.appendingPathComponent(key)
                // Kubernetes writes the value as it is; one written by hand often ends in a newline.
                try (content + "\n").write(to: file, atomically: true, encoding: .utf8)
                environment[name] = file.path
            }
            return environment
        }

        let asShipped = try environment(replacingPlaceholders: false)
        #expect(throws: ConfigurationError.self, "the template's placeholders stop start-up") {
            try BridgeConfiguration(environment: asShipped, arguments: [])
        }
        let fromFiles = try BridgeConfiguration(environment: try environment(replacingPlaceholders: true), arguments: [])
        let fromValues = try BridgeSettings.configuration(try podEnvironment())
        #expect(fromFiles.amqpURL == fromValues.amqpURL)
        #expect(fromFiles.blitlineApplicationID == fromValues.blitlineApplicationID)
        #expect(fromFiles.postbackSecrets == fromValues.postbackSecrets)
        #expect(fromFiles.usesPostbacks)
    }

    @Test func probesAndPortFollowTheListenAddress() throws {
        let container = try container()
        let port = try BridgeSettings.configuration(try podEnvironment()).listenPort
        #expect(port == BridgeConfiguration().listenPort)
        let ports = container["ports"]?.array() ?? []
        let http = try #require(ports.first { $0["name"]?.string == "http" }, "no container port named http")
        #expect(http["containerPort"]?.int == port)
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = try #require(container[path: probe, "httpGet"], "\(probe) should be an HTTP GET")
            #expect(get["path"]?.string == path, "\(probe)")
            let probePort = get["port"]
            #expect(probePort?.string == "http" || probePort?.int == port, "\(probe) port")
        }
        let annotations = deployment[path: "spec", "template", "metadata", "annotations"]?.stringPairs ?? [:]
        if let scrapePort = annotations["prometheus.io/port"] {
            #expect(Int(scrapePort) == port)
        }
    }

    @Test func podOutlastsTheShutdownTimeout() throws {
        let grace = try #require(podSpec?["terminationGracePeriodSeconds"]?.int)
        let configured = try BridgeSettings.configuration(try podEnvironment()).shutdownTimeout
        #expect(Double(grace) > seconds(configured))
        #expect(Double(grace) > seconds(BridgeConfiguration().shutdownTimeout))
    }

    @Test func runsAsTheImagesNonRootUserWithAReadOnlyRoot() throws {
        let pod = try #require(podSpec?["securityContext"])
        #expect(pod["runAsNonRoot"]?.bool == true)
        #expect(pod["runAsUser"]?.int == (try Dockerfile.load().userID))
        let container = try container()
        #expect(container[path: "securityContext", "allowPrivilegeEscalation"]?.bool == false)
        #expect(container[path: "securityContext", "readOnlyRootFilesystem"]?.bool == true)
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                #expect(container[path: "resources", kind, resource] != nil, "resources.\(kind).\(resource)")
            }
        }
    }

    @Test func serviceBudgetAndAutoscalerTargetTheDeployment() throws {
        let deploymentName = try #require(deployment[path: "metadata", "name"]?.string)
        #expect(selects(deployment[path: "spec", "selector", "matchLabels"]?.stringPairs ?? [:]))

        #expect(selects(service[path: "spec", "selector"]?.stringPairs ?? [:]))
        let containerPorts = try container()["ports"]?.array().compactMap { $0["name"]?.string } ?? []
        let servicePorts = service[path: "spec", "ports"]?.array() ?? []
        #expect(servicePorts.count == 1)
        for port in servicePorts {
            #expect(port["port"]?.int == 80)
            let target = try #require(port["targetPort"]?.string)
            #expect(containerPorts.contains(target), "targetPort \(target) is no named container port")
        }

        #expect(selects(budget[path: "spec", "selector", "matchLabels"]?.stringPairs ?? [:]))
        let minAvailable = try #require(budget[path: "spec", "minAvailable"]?.int)
        let replicas = try #require(deployment[path: "spec", "replicas"]?.int)
        let minReplicas = try #require(autoscaler[path: "spec", "minReplicas"]?.int)
        // Otherwise no node could ever be drained.
        #expect(minAvailable < replicas && minAvailable < minReplicas)

        let target = try #require(autoscaler[path: "spec", "scaleTargetRef"])
        #expect(target["apiVersion"]?.string == "apps/v1")
        #expect(target["kind"]?.string == "Deployment")
        #expect(target["name"]?.string == deploymentName)
        #expect(minReplicas == 2)
        #expect(autoscaler[path: "spec", "maxReplicas"]?.int == 10)
        let metrics = autoscaler[path: "spec", "metrics"]?.array() ?? []
        let cpu = try #require(metrics.first { $0[path: "resource", "name"]?.string == "cpu" })
        #expect(cpu[path: "resource", "target", "type"]?.string == "Utilization")
        #expect(cpu[path: "resource", "target", "averageUtilization"]?.int == 70)
    }

    @Test func kedaScalesTheDeploymentOnTheJobsQueueInsteadOfTheAutoscaler() throws {
        let target = try #require(scaledObject[path: "spec", "scaleTargetRef"])
        #expect(target["apiVersion"]?.string == "apps/v1")
        #expect(target["kind"]?.string == "Deployment")
        #expect(target["name"]?.string == deployment[path: "metadata", "name"]?.string)
        // Never to zero: the replicas answer postbacks whatever the queue holds.
        #expect(scaledObject[path: "spec", "minReplicaCount"]?.int == autoscaler[path: "spec", "minReplicas"]?.int)
        #expect(scaledObject[path: "spec", "maxReplicaCount"]?.int == autoscaler[path: "spec", "maxReplicas"]?.int)

        let triggers = scaledObject[path: "spec", "triggers"]?.array() ?? []
        let queue = try #require(triggers.first { $0["type"]?.string == "rabbitmq" }, "no rabbitmq trigger")
        #expect(queue[path: "metadata", "queueName"]?.string == configData["JOBS_QUEUE"])
        #expect(queue[path: "metadata", "mode"]?.string == "QueueLength")
        #expect(triggers.contains { $0["type"]?.string == "cpu" }, "CPU still counts, as in hpa.yaml")
        for trigger in triggers {
            // KEDA takes trigger metadata as strings only.
            if let metadata = trigger["metadata"]?.mapping {
                for (key, value) in metadata {
                    #expect(value.isString, "\(key.string ?? ""): quote it")
                }
            }
        }

        let authentication = try #require(queue[path: "authenticationRef", "name"]?.string)
        #expect(authentication == triggerAuthentication[path: "metadata", "name"]?.string)
        let references = triggerAuthentication[path: "spec", "secretTargetRef"]?.array() ?? []
        let host = try #require(references.first { $0["parameter"]?.string == "host" }, "KEDA needs the broker's URL")
        #expect(host["name"]?.string == secret[path: "metadata", "name"]?.string)
        #expect(host["key"]?.string == "AMQP_URL")

        // KEDA makes an HPA of its own and refuses a workload that another HPA scales.
        let component = try DeployFolder.yaml("\(Self.folder)/keda/kustomization.yaml")
        let patches = component["patches"]?.array().compactMap { $0["patch"]?.string } ?? []
        let deletion = try #require(patches.first { $0.contains("$patch: delete") }, "keda/ should delete hpa.yaml's HPA")
        let patch = try #require(try Yams.compose(yaml: deletion))
        #expect(patch["apiVersion"]?.string == autoscaler["apiVersion"]?.string)
        #expect(patch["kind"]?.string == autoscaler["kind"]?.string)
        #expect(patch[path: "metadata", "name"]?.string == autoscaler[path: "metadata", "name"]?.string)
    }

    @Test func ingressRoutesOnlyThePostbackPath() throws {
        let base = try #require(configData["POSTBACK_BASE_URL"].flatMap { URLComponents(string: $0) })
        var prefix = base.path
        while prefix.hasSuffix("/") { prefix.removeLast() }
        let servicePort = service[path: "spec", "ports"]?.array().first?["name"]?.string
        let rules = ingress[path: "spec", "rules"]?.array() ?? []
        #expect(rules.count == 1)
        for rule in rules {
            #expect(rule["host"]?.string == base.host)
            let routes = rule[path: "http", "paths"]?.array() ?? []
            #expect(routes.count == 1, "only the postback path: /metrics and the probes stay inside")
            for route in routes {
                #expect(route["path"]?.string == prefix + "/postback/")
                #expect(route["pathType"]?.string == "Prefix")
                #expect(route[path: "backend", "service", "name"]?.string == service[path: "metadata", "name"]?.string)
                #expect(route[path: "backend", "service", "port", "name"]?.string == servicePort)
            }
        }
        #expect(ingress[path: "spec", "defaultBackend"] == nil, "a default backend would expose every path")
    }

    @Test func networkPolicyLetsInTheListenerOnlyAndOutTheBrokerBlitlineAndDNS() throws {
        let types = networkPolicy[path: "spec", "policyTypes"]?.array().compactMap(\.string) ?? []
        #expect(Set(types) == ["Ingress", "Egress"])
        let ports = try container()["ports"]?.array() ?? []
        let listener = try #require(ports.first { $0["name"]?.string == "http" })
        let rules = networkPolicy[path: "spec", "ingress"]?.array() ?? []
        #expect(!rules.isEmpty)
        for rule in rules {
            #expect(rule["from"] != nil, "an ingress rule without from: lets anyone in")
            let allowed = rule["ports"]?.array() ?? []
            #expect(!allowed.isEmpty, "an ingress rule without ports: opens every port")
            for port in allowed {
                #expect(port["port"]?.string == "http" || port["port"]?.int == listener["containerPort"]?.int)
            }
        }
        let egress = networkPolicy[path: "spec", "egress"]?.array() ?? []
        let out = Set(egress.flatMap { rule in (rule["ports"]?.array() ?? []).compactMap { $0["port"]?.int } })
        #expect(out == [53, 5671, 5672, 443])
    }

    @Test func serviceMonitorScrapesTheServicesPort() throws {
        let selector = serviceMonitor[path: "spec", "selector", "matchLabels"]?.stringPairs ?? [:]
        let serviceLabels = service[path: "metadata", "labels"]?.stringPairs ?? [:]
        #expect(!selector.isEmpty && selector.allSatisfy { serviceLabels[$0.key] == $0.value })
        let servicePorts = service[path: "spec", "ports"]?.array().compactMap { $0["name"]?.string } ?? []
        let endpoints = serviceMonitor[path: "spec", "endpoints"]?.array() ?? []
        #expect(endpoints.count == 1)
        for endpoint in endpoints {
            #expect(servicePorts.contains(endpoint["port"]?.string ?? ""), "endpoints name the Service's port")
            #expect(endpoint["path"]?.string == "/metrics")
        }
        // The job label is then the Service's name, which deploy/prometheus/alerts.yaml selects.
        #expect(serviceMonitor[path: "spec", "jobLabel"] == nil)
        #expect(service[path: "metadata", "name"]?.string == "blitline-bridge")
    }
}
