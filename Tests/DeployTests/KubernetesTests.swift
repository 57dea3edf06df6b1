import BlitlineBridge
import Foundation
import Testing
import Yams

/// `deploy/kubernetes/`: each manifest's kind, and the references between them and to the bridge's
/// settings, listener and shutdown limit.
@Suite struct KubernetesTests {
    static let folder = "deploy/kubernetes"
    /// File → (apiVersion, kind).
    static let manifests: [String: (apiVersion: String, kind: String)] = [
        "configmap.yaml": ("v1", "ConfigMap"),
        "secret.yaml": ("v1", "Secret"),
        "deployment.yaml": ("apps/v1", "Deployment"),
        "service.yaml": ("v1", "Service"),
        "pdb.yaml": ("policy/v1", "PodDisruptionBudget"),
        "hpa.yaml": ("autoscaling/v2", "HorizontalPodAutoscaler"),
        "kustomization.yaml": ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ]

    let configMap: Node
    let secret: Node
    let deployment: Node
    let service: Node
    let budget: Node
    let autoscaler: Node
    let kustomization: Node

    init() throws {
        func load(_ file: String) throws -> Node { try DeployFolder.yaml("\(Self.folder)/\(file)") }
        configMap = try load("configmap.yaml")
        secret = try load("secret.yaml")
        deployment = try load("deployment.yaml")
        service = try load("service.yaml")
        budget = try load("pdb.yaml")
        autoscaler = try load("hpa.yaml")
        kustomization = try load("kustomization.yaml")
    }

    var podSpec: Node? { deployment[path: "spec", "template", "spec"] }

    func container() throws -> Node {
        let containers = podSpec?["containers"]?.array() ?? []
        try #require(containers.count == 1, "one container expected")
        return containers[0]
    }

    /// What the pod's environment holds: the ConfigMap's data, then the Secret's values.
    func podEnvironment() -> [String: String] {
        let data = configMap["data"]?.stringPairs ?? [:]
        return data.merging(secret["stringData"]?.stringPairs ?? [:]) { _, secret in secret }
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
            if expected.kind != "Kustomization" {
                #expect(node[path: "metadata", "name"]?.string == "blitline-bridge", "\(file)")
            }
        }
    }

    @Test func kustomizationListsEveryManifestAndNamesTheImage() throws {
        let resources = Set(kustomization["resources"]?.array().compactMap(\.string) ?? [])
        #expect(resources == Set(Self.manifests.keys).subtracting(["kustomization.yaml"]))
        let onDisk = DeployFolder.yamlFiles().filter { $0.hasPrefix(Self.folder + "/") }
            .map { String($0.dropFirst(Self.folder.count + 1)) }
        #expect(Set(onDisk) == Set(Self.manifests.keys), "a manifest this test does not know")
        let image = try #require(try container()["image"]?.string)
        let renamed = kustomization["images"]?.array().compactMap { $0["name"]?.string } ?? []
        #expect(renamed.contains(image), "kustomization.yaml's images: should name the Deployment's image")
    }

    @Test func configMapHoldsEveryOtherSettingAtItsDefault() throws {
        let data = try #require(configMap["data"]?.mapping)
        let secretKeys = Set(secret["stringData"]?.keys ?? [])
        var names: Set<String> = []
        for (key, value) in data {
            let name = try #require(key.string)
            names.insert(name)
            #expect(BridgeSettings.names.contains(name), "\(name) is no setting of the bridge")
            #expect(value.isString, "\(name): ConfigMap values must be strings; quote it")
            // A value differs from the default only where there is none to state (an example).
            if let defaultValue = BridgeSettings.defaults[name], let defaultValue {
                #expect(value.string == defaultValue, "\(name): the default is \(defaultValue)")
            }
        }
        #expect(names.isDisjoint(with: secretKeys))
        #expect(names.union(secretKeys) == BridgeSettings.names, "every setting in the ConfigMap or the Secret")
    }

    @Test func secretHoldsTheSecretsAsPlaceholders() {
        #expect(secret["type"]?.string == "Opaque")
        let values = secret["stringData"]?.stringPairs ?? [:]
        #expect(Set(values.keys) == ["AMQP_URL", "BLITLINE_APPLICATION_ID", "POSTBACK_SECRET"])
        for (name, value) in values {
            #expect(value.contains("REPLACE_ME"), "\(name) should be a placeholder marked REPLACE_ME")
        }
    }

    @Test func configMapAndSecretMakeAValidPostbackConfiguration() throws {
        let configuration = try BridgeSettings.configuration(podEnvironment())
        #expect(configuration.usesPostbacks)
        #expect(configuration.blitlineApplicationID != nil)
    }

    @Test func deploymentTakesTheConfigMapAndEverySecret() throws {
        let container = try container()
        let sources = container["envFrom"]?.array() ?? []
        #expect(sources.compactMap { $0[path: "configMapRef", "name"]?.string } == [configMap[path: "metadata", "name"]?.string])
        let secretName = secret[path: "metadata", "name"]?.string
        var fromSecret: Set<String> = []
        for variable in container["env"]?.array() ?? [] {
            let name = try #require(variable["name"]?.string)
            #expect(BridgeSettings.names.contains(name), "\(name) is no setting of the bridge")
            let reference = try #require(variable[path: "valueFrom", "secretKeyRef"], "\(name) should come from the Secret")
            #expect(reference["name"]?.string == secretName)
            #expect(reference["key"]?.string == name)
            fromSecret.insert(name)
        }
        #expect(fromSecret == Set(secret["stringData"]?.keys ?? []))
    }

    @Test func probesAndPortFollowTheListenAddress() throws {
        let container = try container()
        let port = try BridgeSettings.configuration(podEnvironment()).listenPort
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
        let configured = try BridgeSettings.configuration(podEnvironment()).shutdownTimeout
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
}
