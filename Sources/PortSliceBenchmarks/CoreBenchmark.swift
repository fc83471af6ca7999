import Foundation
import PortSliceCore
import PortSliceDNS

/// One line of a benchmark table: what was measured, our number, the peer's, and the target.
public struct BenchmarkRow: Sendable, Encodable {
    public let metric: String
    public let portslice: String
    public let peer: String
    public let peerName: String
    public let target: String
    /// nil when the row has no target.
    public let meetsTarget: Bool?
}

/// The core benchmarks of `portslice bench core`: prefix lookups, table memory, geofeed parsing,
/// egress choice and the stub resolver's cache and answer parser, each beside a peer measured in
/// the same run where there is one.
public struct CoreBenchmark: Sendable {
    public var prefixCount = 300_000
    public var poolSize = 1_000
    /// How long each timed loop runs at least.
    public var minimumSeconds = 1.0

    public init() {}

    public func run(progress: (String) -> Void) throws -> [BenchmarkRow] {
        progress("generating a \(prefixCount)-prefix geofeed (seeded)")
        let synthetic = SyntheticGeofeed(prefixCount: prefixCount)
        let csv = Array(synthetic.feed.csv(header: ["synthetic benchmark feed"]).utf8)
        var rows: [BenchmarkRow] = []

        progress("parsing the geofeed")
        let feed = try Geofeed.read(csv, source: "bench")
        let parseRate = rate(items: prefixCount) { _ = try? Geofeed.read(csv, source: "bench") }
        let pythonRate = try pythonParseRate(csv)
        rows.append(BenchmarkRow(
            metric: "geofeed lines parsed/s", portslice: Self.millions(parseRate),
            peer: pythonRate.map(Self.millions) ?? "n/a (no python3)", peerName: "python3 csv + ipaddress",
            target: ">= 1 M", meetsTarget: parseRate >= 1_000_000))

        progress("building the lookup tables")
        let index = TraitIndex(feeds: [feed])
        let trie = BinaryTrie(feed.entries.enumerated().compactMap { position, entry in
            if case .v4(let prefix) = entry.prefix { return (prefix, Int32(position)) } else { return nil }
        })
        let bytesPerPrefix = Double(index.tableStorageBytes) / Double(index.prefixCount)
        let trieBytesPerPrefix = Double(trie.storageBytes) / Double(index.prefixCount)
        rows.append(BenchmarkRow(
            metric: "bytes per prefix (IPv4 table)", portslice: String(format: "%.1f", bytesPerPrefix),
            peer: String(format: "%.1f", trieBytesPerPrefix), peerName: "binary trie",
            target: "<= 64", meetsTarget: bytesPerPrefix <= 64))

        progress("looking up addresses")
        let addresses = lookupAddresses(feed)
        var found = 0
        let lookupRate = rate(items: addresses.count) {
            for address in addresses where index.lookup(address) != nil { found &+= 1 }
        }
        var trieFound = 0
        let trieRate = rate(items: addresses.count) {
            for address in addresses where trie.lookup(address) >= 0 { trieFound &+= 1 }
        }
        rows.append(BenchmarkRow(
            metric: "IPv4 longest-prefix lookups/s (1 core)", portslice: Self.millions(lookupRate),
            peer: Self.millions(trieRate), peerName: "binary trie",
            target: ">= 5 M", meetsTarget: lookupRate >= 5_000_000))

        progress("choosing egress addresses")
        let pool = try egressPool(synthetic)
        let clients = addresses.prefix(100_000).map { address in
            (IPAddress.v4(address), index.lookup(address)?.traits ?? .unknown)
        }
        var chosen = 0
        let chooseRate = rate(items: clients.count) {
            for (client, traits) in clients where pool.choose(for: client, traits: traits) != nil { chosen &+= 1 }
        }
        let rankedClients = clients.prefix(5_000)
        let rankRate = rate(items: rankedClients.count) {
            for (client, traits) in rankedClients where !pool.ranked(for: client, traits: traits).isEmpty { chosen &+= 1 }
        }
        rows.append(BenchmarkRow(
            metric: "egress choices/s (pool of \(poolSize))", portslice: Self.thousands(chooseRate),
            peer: Self.thousands(rankRate), peerName: "score and sort every address",
            target: "-", meetsTarget: nil))
        precondition(found > 0 && trieFound > 0 && chosen > 0, "benchmark loops found nothing: the data is wrong")
        rows += try resolverRows(progress: progress)
        return rows
    }

    /// Cached lookups (10,000 names, a seeded mix of them looked up) beside a dictionary keyed by
    /// the lowercased text, the obvious cache; and parses of a typical answer: one question, a
    /// CNAME and two A records, compressed, with an OPT record.
    private func resolverRows(progress: (String) -> Void) throws -> [BenchmarkRow] {
        progress("filling the resolver cache")
        var random = SplitMix64(seed: 0xD45)
        let texts = (0..<10_000).map { "host\($0).zone\($0 % 97).example.com" }
        let names = try texts.map { try DNSName(parsing: $0) }
        let now = ContinuousClock.now
        let cache = DNSCache(capacity: names.count)
        var peer: [String: [IPAddress]] = [:]
        for (index, name) in names.enumerated() {
            let addresses: [IPAddress] = [.v4(IPv4Address(bits: 0xC633_6400 | UInt32(index & 0xFF)))]
            cache.insert(.addresses(addresses), for: name, type: .a, scope: nil, ttl: 300, now: now)
            peer[texts[index].lowercased()] = addresses
        }
        let picks = (0..<100_000).map { _ in Int.random(in: 0..<names.count, using: &random) }
        let lookups = picks.map { names[$0] }
        let lookupTexts = picks.map { texts[$0] }
        var hits = 0
        let cacheRate = rate(items: lookups.count) {
            for name in lookups where cache.lookup(name, type: .a, subnet: nil, now: now) != nil { hits &+= 1 }
        }
        let peerRate = rate(items: lookupTexts.count) {
            for text in lookupTexts where peer[text.lowercased()] != nil { hits &+= 1 }
        }

        progress("parsing DNS answers")
        var parsed = 0
        let parseRate = Self.typicalAnswer.withUnsafeBytes { message in
            rate(items: 100_000) {
                for _ in 0..<100_000 {
                    if let response = try? DNSResponse(parsing: message) { parsed &+= response.addresses.count }
                }
            }
        }
        precondition(hits > 0 && parsed > 0, "resolver loops found nothing: the data is wrong")
        return [
            BenchmarkRow(
                metric: "resolver cache lookups/s (1 core)", portslice: Self.millions(cacheRate),
                peer: Self.millions(peerRate), peerName: "Dictionary by lowercased String, no TTL or eviction",
                target: ">= 1 M", meetsTarget: cacheRate >= 1_000_000),
            BenchmarkRow(
                metric: "DNS answers parsed/s (CNAME + 2 A)", portslice: Self.millions(parseRate),
                peer: "-", peerName: "-", target: ">= 2 M", meetsTarget: parseRate >= 2_000_000),
        ]
    }

    /// www.example.com A answered with a CNAME to cdn.example.com and two A records, the owners
    /// and the CNAME's target compressed, and an OPT record: 94 bytes.
    private static let typicalAnswer: [UInt8] = [
        0xBE, 0xEF, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,
        0x03, 0x77, 0x77, 0x77, 0x07, 0x65, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0x03, 0x63, 0x6F, 0x6D, 0x00,
        0x00, 0x01, 0x00, 0x01,
        0xC0, 0x0C, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x06, 0x03, 0x63, 0x64, 0x6E, 0xC0, 0x10,
        0xC0, 0x2D, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2C, 0x00, 0x04, 0xC6, 0x33, 0x64, 0x0A,
        0xC0, 0x2D, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x04, 0xC6, 0x33, 0x64, 0x0B,
        0x00, 0x00, 0x29, 0x04, 0xD0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]

    /// Half the addresses inside feed prefixes, half uniform, in seeded random order.
    private func lookupAddresses(_ feed: Geofeed) -> [IPv4Address] {
        var random = SplitMix64(seed: 0xadd7)
        return (0..<1_000_000).map { index in
            if index % 2 == 0, case .v4(let prefix) = feed.entries.randomElement(using: &random)!.prefix {
                return IPv4Address(bits: prefix.network.bits | UInt32.random(in: 0...UInt32.max, using: &random) & ~IPv4Prefix.mask(Int(prefix.length)))
            }
            return IPv4Address(bits: UInt32.random(in: 0...UInt32.max, using: &random))
        }
    }

    private func egressPool(_ synthetic: SyntheticGeofeed) throws -> EgressPool {
        var random = SplitMix64(seed: 0x9001)
        return try EgressPool((0..<poolSize).map { index in
            EgressAddress(
                address: IPv4Address(bits: 0xCB00_7100 &+ UInt32(index)),
                traits: synthetic.locations.randomElement(using: &random)!)
        })
    }

    /// Items per second of `body`, run repeatedly for at least `minimumSeconds`.
    private func rate(items: Int, _ body: () -> Void) -> Double {
        let clock = ContinuousClock()
        var rounds = 0
        let start = clock.now
        var elapsed = Duration.zero
        repeat {
            body()
            rounds += 1
            elapsed = clock.now - start
        } while elapsed < .seconds(minimumSeconds)
        return Double(items * rounds) / elapsed.seconds
    }

    /// The peer parse: Python's csv reader and ipaddress module over the same file, the usual
    /// tools of geofeed validators; nil when python3 is not installed.
    private func pythonParseRate(_ csv: [UInt8]) throws -> Double? {
        guard let python = Self.findExecutable("python3") else { return nil }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let feedFile = directory.appendingPathComponent("feed.csv")
        let scriptFile = directory.appendingPathComponent("parse.py")
        try Data(csv).write(to: feedFile)
        try Data(Self.pythonParser.utf8).write(to: scriptFile)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [scriptFile.path, feedFile.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard process.terminationStatus == 0, fields.count == 2, let lines = Double(fields[0]),
              let seconds = Double(fields[1]), seconds > 0
        else { throw BenchmarkFailure("the python3 peer failed (exit \(process.terminationStatus)): \(text)") }
        return lines / seconds
    }

    private static let pythonParser = """
        import csv, ipaddress, sys, time
        start = time.perf_counter()
        seen = {}
        with open(sys.argv[1], encoding="utf-8", newline="") as feed:
            for row in csv.reader(feed):
                if not row or row[0].lstrip().startswith("#"):
                    continue
                network = ipaddress.ip_network(row[0].strip(), strict=True)
                if network in seen:
                    sys.exit("duplicate prefix")
                seen[network] = row[1:]
        print(len(seen), time.perf_counter() - start)
        """

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func millions(_ value: Double) -> String { String(format: "%.2f M", value / 1e6) }
    static func thousands(_ value: Double) -> String { String(format: "%.1f k", value / 1e3) }
}

struct BenchmarkFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
