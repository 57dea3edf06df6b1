import BlitlineBridge
import Foundation
import Testing

/// `deploy/Dockerfile` as instructions: continuation lines joined, comments and parser directives
/// dropped, each instruction tagged with the build stage it belongs to.
struct Dockerfile {
    struct Instruction {
        /// Upper case, e.g. `COPY`.
        var keyword: String
        var arguments: String
        /// 0 for the first `FROM`'s stage.
        var stage: Int
    }

    var instructions: [Instruction] = []

    init(_ text: String) {
        var logical = ""
        var stage = -1
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") { continue }
            if trimmed.hasSuffix("\\") {
                logical += trimmed.dropLast() + " "
                continue
            }
            logical += trimmed
            let parts = logical.split(separator: " ", maxSplits: 1)
            logical = ""
            guard let keyword = parts.first?.uppercased() else { continue }
            if keyword == "FROM" { stage += 1 }
            let arguments = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            instructions.append(Instruction(keyword: keyword, arguments: arguments, stage: stage))
        }
    }

    func all(_ keyword: String, stage: Int? = nil) -> [String] {
        instructions.filter { $0.keyword == keyword && (stage == nil || $0.stage == stage) }.map(\.arguments)
    }

    /// The image of each stage, in order.
    var baseImages: [String] {
        all("FROM").map { String($0.split(separator: " ")[0]) }
    }

    var lastStage: Int { baseImages.count - 1 }

    /// The numeric user id the image runs as (`USER uid[:gid]`), if it names one.
    var userID: Int? {
        guard let user = all("USER", stage: lastStage).last else { return nil }
        return Int(user.split(separator: ":")[0])
    }

    static func load() throws -> Dockerfile {
        Dockerfile(try DeployFolder.text("deploy/Dockerfile"))
    }
}

@Suite struct DockerfileTests {
    let dockerfile: Dockerfile
    let defaults = BridgeConfiguration()

    init() throws {
        dockerfile = try Dockerfile.load()
    }

    /// `// swift-tools-version: 6.2` → [6, 2].
    func toolsVersion() throws -> [Int] {
        let manifest = try DeployFolder.text("Package.swift")
        let first = try #require(manifest.split(separator: "\n").first)
        let version = try #require(first.split(separator: ":").last).trimmingCharacters(in: .whitespaces)
        return version.split(separator: ".").compactMap { Int($0) }
    }

    @Test func buildsWithASwiftImageNewEnoughForThePackageOnTheRuntimesDebian() throws {
        let images = dockerfile.baseImages
        try #require(images.count == 2, "a build stage and a runtime stage")
        let build = images[0]
        #expect(build.hasPrefix("swift:") && build.hasSuffix("-bookworm"), "build image \(build)")
        let imageVersion = build.dropFirst("swift:".count).split(separator: "-")[0]
            .split(separator: ".").compactMap { Int($0) }
        let tools = try toolsVersion()
        #expect(imageVersion.lexicographicallyPrecedes(tools) == false,
            "\(build) is older than swift-tools-version \(tools)")
        // The executables are linked against the build image's glibc: the runtime must be the same Debian.
        #expect(images[1] == "debian:bookworm-slim")
    }

    @Test func buildsBothExecutablesWithTheStaticStandardLibrary() throws {
        let runs = dockerfile.all("RUN", stage: 0)
        #expect(runs.contains { $0.contains("librabbitmq-dev") && $0.contains("libmimalloc-dev") && $0.contains("pkg-config") })
        let commands = runs.flatMap { $0.split(separator: "&&") }.map { $0.split(separator: " ") }
        let manifest = try DeployFolder.text("Package.swift")
        for product in ["blitline-bridge", "blitline-simulator"] {
            #expect(manifest.contains(".executable(name: \"\(product)\""), "\(product) is no product of Package.swift")
            let build = commands.first { words in
                words.indices.dropLast().contains { words[$0] == "--product" && words[$0 + 1] == product }
            }.map { $0.joined(separator: " ") }
            let command = try #require(build, "no swift build --product \(product)")
            #expect(command.contains("swift build -c release"))
            #expect(command.contains("--static-swift-stdlib"))
        }
    }

    @Test func copiesFromTheRepositoryRoot() {
        // The build context is the repository root (docker build -f deploy/Dockerfile .).
        for copy in dockerfile.all("COPY", stage: 0) where !copy.hasPrefix("--from") {
            let sources = copy.split(separator: " ").dropLast()
            for source in sources where !source.contains("*") {
                #expect(DeployFolder.exists(String(source)), "COPY \(source): not in the repository root")
            }
        }
        let ignored = (try? DeployFolder.text(".dockerignore"))?.split(separator: "\n").map(String.init) ?? []
        #expect(ignored.contains(".build"), ".dockerignore at the root keeps .build out of the context")
        #expect(ignored.contains(".git"))
    }

    @Test func runtimeHasTheLibrariesAndBothExecutables() throws {
        let runtime = dockerfile.lastStage
        let runs = dockerfile.all("RUN", stage: runtime).joined(separator: "\n")
        // The bridge is linked against librabbitmq and mimalloc (Package.swift).
        for package in ["librabbitmq4", "libmimalloc2.0", "ca-certificates", "curl"] {
            #expect(runs.contains(package), "runtime stage installs no \(package)")
        }
        let copies = dockerfile.all("COPY", stage: runtime).filter { $0.hasPrefix("--from=") }
        for executable in ["blitline-bridge", "blitline-simulator"] {
            let copy = copies.first { $0.contains("/\(executable) ") }
            #expect(copy?.hasSuffix(" /usr/local/bin/") == true, "\(executable) is not copied to /usr/local/bin/")
        }
        #expect(dockerfile.all("ENTRYPOINT", stage: runtime) == [#"["blitline-bridge"]"#])
        #expect(dockerfile.all("STOPSIGNAL", stage: runtime) == ["SIGTERM"])
    }

    @Test func exposesTheListenerAndChecksHealthzOnIt() throws {
        let runtime = dockerfile.lastStage
        let exposed = dockerfile.all("EXPOSE", stage: runtime)
        #expect(exposed == ["\(defaults.listenPort)"])
        for address in dockerfile.all("ENV", stage: runtime).map({ $0.split(separator: "=", maxSplits: 1) })
        where address.first == "LISTEN_ADDRESS" {
            #expect(try listenPort(String(address[1])) == defaults.listenPort)
        }
        let healthcheck = try #require(dockerfile.all("HEALTHCHECK", stage: runtime).last)
        let url = try #require(healthcheck.split(separator: " ").first { $0.hasPrefix("http://") })
        let components = try #require(URLComponents(string: String(url)))
        #expect(components.path == "/healthz")
        #expect(components.port == defaults.listenPort)
        #expect(healthcheck.contains("CMD curl -fsS"))
    }

    @Test func runsAsAUserItCreatesThatIsNotRoot() throws {
        let userID = dockerfile.userID
        let uid = try #require(userID, "USER should be numeric so that runAsNonRoot can check it")
        #expect(uid != 0)
        let runs = dockerfile.all("RUN", stage: dockerfile.lastStage).joined(separator: "\n")
        #expect(runs.contains("useradd") && runs.contains("--uid \(uid)"))
    }
}
