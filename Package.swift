// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "blitline-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "blitline-bridge", targets: ["blitline-bridge"]),
        .executable(name: "blitline-simulator", targets: ["blitline-simulator"]),
        .executable(name: "amqp-bench", targets: ["amqp-bench"]),
        .executable(name: "amqp-bench-c", targets: ["amqp-bench-c"]),
        .executable(name: "bridge-bench", targets: ["bridge-bench"]),
        .library(name: "AMQP", targets: ["AMQP"]),
        .library(name: "Blitline", targets: ["Blitline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP export of the bridge's spans, over HTTP only (no gRPC in the build).
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // The only module that touches C: librabbitmq (Debian's librabbitmq-dev) and a shim for
        // what Swift cannot call directly.
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        // AMQP 0-9-1 over librabbitmq: connections, channels, confirms, consumers. No C type leaks out.
        .target(
            name: "AMQP",
            dependencies: [
                "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Waiting, written once: racing work against a deadline, tasks waiting their turn, and servers
        // that take cancellation as a graceful shutdown first.
        .target(
            name: "AsyncSupport",
            dependencies: [
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Blitline's HTTP API: jobs, submission, results, long polling. Knows nothing of AMQP.
        .target(
            name: "Blitline",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // A faithful local Blitline: submit, processing, postbacks, long poll, fault injection.
        .target(
            name: "BlitlineSimulator",
            dependencies: [
                "AsyncSupport",
                "Blitline",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "blitline-simulator",
            dependencies: [
                "Blitline",
                "BlitlineSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The bridge itself: topology, requests, submission, postbacks, polling, deadlines, events.
        .target(
            name: "BlitlineBridge",
            dependencies: [
                "AMQP",
                "AsyncSupport",
                "Blitline",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // The command line: the worker (`run`, the default) and the operator tools, their
        // arguments, output and exit statuses; the logging and metrics bootstrap.
        .target(
            name: "BlitlineBridgeCLI",
            dependencies: [
                "AMQP",
                "AsyncSupport",
                "Blitline",
                "BlitlineBridge",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // Linked with mimalloc (Debian's libmimalloc-dev; libmimalloc2.0 at run time), which takes
        // over malloc for the whole process: 5 – 13 % less CPU per job than glibc's allocator
        // (deploy/BENCHMARKS.md, "An allocator of its own").
        .executableTarget(
            name: "blitline-bridge",
            dependencies: ["BlitlineBridgeCLI"],
            linkerSettings: [.linkedLibrary("mimalloc")]
        ),
        // Benchmarks: the Swift wrapper against the same workload driven by C directly.
        .executableTarget(
            name: "amqp-bench",
            dependencies: ["AMQP"]
        ),
        .executableTarget(
            name: "amqp-bench-c",
            dependencies: ["CRabbitMQ"]
        ),
        // End-to-end load: the bridge and the simulator as processes, against a local broker.
        .executableTarget(
            name: "bridge-bench",
            dependencies: ["AMQP", "Blitline"]
        ),
        // What the test targets share (waiting, ports, names, the broker's control scripts).
        .target(
            name: "TestSupport",
            dependencies: [
                "AMQP",
                "AsyncSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "AsyncSupportTests",
            dependencies: [
                "AsyncSupport", "TestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "AMQPTests",
            dependencies: ["AMQP", "TestSupport"]
        ),
        .testTarget(
            name: "BlitlineBridgeTests",
            dependencies: [
                "AMQP", "Blitline", "BlitlineBridge", "BlitlineBridgeCLI", "BlitlineSimulator", "TestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The deploy folder's files (Dockerfile, compose, Kubernetes, systemd) against the bridge's settings.
        .testTarget(
            name: "DeployTests",
            dependencies: [
                "BlitlineBridge", "TestSupport",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(
            name: "BlitlineTests",
            dependencies: [
                "Blitline",
                "BlitlineSimulator",
                "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ]
)
