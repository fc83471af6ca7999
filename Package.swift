// swift-tools-version: 6.1
import PackageDescription

// Dependencies point one way: PortSliceCore (pure) <- sockets, API contract, store
// <- control/edge/agent/proxy
// <- PortSliceCLI <- the `portslice` executable, which only wires things together.
let package = Package(
    name: "portslice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "portslice", targets: ["portslice"]),
        .library(name: "PortSliceCore", targets: ["PortSliceCore"]),
        .library(name: "PortSliceSockets", targets: ["PortSliceSockets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // Linux definitions that Glibc's Swift overlay does not export (IP_LOCAL_PORT_RANGE,
        // sock_diag structures). Only the socket module may use it.
        .target(name: "CPortSlice"),
        // SQLite's default page cache behind a wrapper that keeps one temporary page number out
        // of its keys (see the file for why); C, because `sqlite3_config` is variadic.
        .target(name: "CSQLitePageCache", dependencies: [.product(name: "SQLiteNIO", package: "sqlite-nio")]),
        // Pure model: addresses, prefixes, port slices, traits, geofeeds, lookup, egress choice.
        .target(name: "PortSliceCore"),
        // The pure parts of a stub resolver for the proxy's event loop: DNS messages (queries with
        // EDNS Client Subnet, answers with CNAME chains and negative TTLs), resolv.conf, hosts and
        // an answer cache. No I/O.
        .target(name: "PortSliceDNS", dependencies: ["PortSliceCore"]),
        // Sockets from a port slice: TCP and connected UDP without duplicate 4-tuples, kernel
        // probes, sock_diag; the epoll poller, shared-port listener and stream I/O the proxy
        // engine runs on. `Syscalls.swift` is the only file that calls libc.
        .target(
            name: "PortSliceSockets",
            dependencies: [
                "PortSliceCore", "CPortSlice",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The allocator's HTTP contract: routes, roles, request and answer bodies, and the one
        // client that the agent, the edge, the lab and the commands use. The OpenAPI document the
        // allocator serves describes the same routes for other languages.
        .target(
            name: "PortSliceAPI",
            dependencies: [
                "PortSliceCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Where leases live: the allocator's rules (PortSliceCore's AllocatorModel) kept in a
        // database, SQLite embedded or PostgreSQL shared by replicas.
        .target(
            name: "PortSliceStore",
            dependencies: [
                "PortSliceCore",
                // Naming the SQLite threads (prctl, which Swift cannot call).
                "CPortSlice",
                "CSQLitePageCache",
                // For the SQLite library it builds (its VaporCSQLite module): the store calls
                // SQLite's C API itself (see SQLiteConnectionAdapter).
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The allocator's HTTP API (Hummingbird): leases, hosts, pool, who.
        .target(
            name: "PortSliceControl",
            dependencies: [
                "PortSliceCore", "PortSliceStore", "PortSliceAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Return-path steering on the edge and the guard on hosts: slice table -> one nftables
        // transaction (+ policy routes), following the allocator or a file.
        .target(
            name: "PortSliceEdge",
            dependencies: [
                "PortSliceCore", "PortSliceAPI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The egress proxy: SOCKS5 and HTTP on an epoll engine of its own (one loop per core, its
        // kernel calls through PortSliceSockets) with its stub resolver on the same loops
        // (PortSliceDNS's messages and cache), flows from the host's slices; UDP associations
        // on SwiftNIO; the status page and metrics on an admin listener of their own (Hummingbird).
        .target(
            name: "PortSliceProxy",
            dependencies: [
                "PortSliceCore", "PortSliceSockets", "PortSliceDNS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // Users' passwords: bcrypt hashes in the users file, verified credentials remembered by HMAC.
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The host agent: keeps this host's leases (renewed with jitter, held through an
        // allocator outage until they expire, never beyond), puts their addresses on loopback
        // and applies the host guard; tells the proxy which slices it may send from.
        .target(
            name: "PortSliceAgent",
            dependencies: ["PortSliceCore", "PortSliceSockets", "PortSliceAPI", "PortSliceEdge", .product(name: "Logging", package: "swift-log")]
        ),
        // `portslice lab`: a testbed in network namespaces (documentation prefixes only) and
        // the traffic that checks steering end to end.
        .target(name: "PortSliceLab", dependencies: ["PortSliceCore", "PortSliceSockets", "PortSliceEdge"]),
        // Our own benchmark harness, reachable as `portslice bench`.
        // The HTTP rows of `bench alloc` drive the allocator's API (PortSliceAPI's routes and
        // bodies) and serve a first-fit peer with the same routes (Hummingbird).
        .target(
            name: "PortSliceBenchmarks",
            dependencies: [
                "PortSliceCore", "PortSliceSockets", "PortSliceStore", "PortSliceAPI", "PortSliceDNS", "PortSliceControl",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Subcommands; the executable only calls `PortSliceCommand.main()`.
        .target(
            name: "PortSliceCLI",
            dependencies: [
                "PortSliceCore",
                "PortSliceSockets",
                "PortSliceStore",
                "PortSliceAPI",
                "PortSliceDNS",
                "PortSliceControl",
                "PortSliceEdge",
                "PortSliceLab",
                "PortSliceProxy",
                "PortSliceAgent",
                "PortSliceBenchmarks",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "portslice", dependencies: ["PortSliceCLI"]),
        // Test helper: concurrent UDP churn from a slice, run as separate processes.
        .executableTarget(name: "slice-churn", dependencies: ["PortSliceSockets"], path: "Tests/Helpers/SliceChurn"),
        // Test helper: scratch files and databases that a later run cleans up if this one cannot.
        .target(name: "PortSliceTestSupport", path: "Tests/Helpers/TestSupport"),
        .testTarget(name: "PortSliceCoreTests", dependencies: ["PortSliceCore"]),
        .testTarget(name: "PortSliceDNSTests", dependencies: ["PortSliceDNS", "PortSliceCore"]),
        .testTarget(name: "PortSliceAPITests", dependencies: ["PortSliceAPI", "PortSliceCore"]),
        .testTarget(name: "PortSliceEdgeTests", dependencies: ["PortSliceEdge", "PortSliceCore"]),
        .testTarget(
            name: "PortSliceProxyTests",
            dependencies: [
                "PortSliceProxy", "PortSliceCore", "PortSliceSockets", "PortSliceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PortSliceAgentTests",
            dependencies: [
                "PortSliceAgent", "PortSliceAPI", "PortSliceControl", "PortSliceStore", "PortSliceCore", "PortSliceSockets", "PortSliceEdge",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "PortSliceLabTests", dependencies: ["PortSliceLab", "PortSliceCore"]),
        .testTarget(name: "PortSliceBenchmarksTests", dependencies: ["PortSliceBenchmarks", "PortSliceCore", "PortSliceStore"]),
        .testTarget(
            name: "PortSliceControlTests",
            dependencies: [
                "PortSliceControl", "PortSliceStore", "PortSliceCore", "PortSliceAPI", "PortSliceTestSupport",
                .product(name: "Yams", package: "Yams"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PortSliceStoreTests",
            dependencies: ["PortSliceStore", "PortSliceCore", "PortSliceTestSupport", .product(name: "PostgresNIO", package: "postgres-nio")]
        ),
        .testTarget(
            name: "PortSliceSocketsTests",
            dependencies: [
                "PortSliceSockets", "PortSliceCore",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PortSliceCLITests",
            dependencies: [
                "PortSliceCLI", "PortSliceCore", "PortSliceSockets", "PortSliceEdge", "PortSliceLab", "PortSliceStore", "PortSliceAPI",
                "PortSliceTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
