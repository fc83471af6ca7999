import Foundation
import PortSliceCore
import PortSliceSockets
import Testing

@Suite("portslice command line")
struct CommandTests {
    private func run(_ arguments: String...) async throws -> CommandRunner.Result {
        try await CommandRunner.run(arguments)
    }

    @Test func everyCommandHasHelp() async throws {
        let root = try await run("--help")
        #expect(root.status == 0)
        for name in ["serve", "pool", "hosts", "leases", "status", "who", "plan", "geofeed", "lookup", "doctor", "connect", "edge", "lab", "bench"] {
            #expect(root.output.contains(name))
        }
        for command in [
            ["serve"], ["pool"], ["pool", "import"], ["pool", "drain"], ["pool", "remove"], ["hosts"], ["hosts", "add"],
            ["leases"], ["status"], ["who"], ["plan"], ["geofeed"], ["geofeed", "check"], ["geofeed", "format"], ["lookup"], ["doctor"], ["connect"],
            ["bench"], ["bench", "core"], ["bench", "connect"], ["edge"], ["edge", "render"], ["lab"], ["lab", "up"], ["lab", "run"], ["lab", "down"], ["lab", "bench"],
        ] {
            let help = try await CommandRunner.run(command + ["--help"])
            #expect(help.status == 0, "\(command) --help")
            #expect(help.output.contains("OVERVIEW:") && help.output.contains("USAGE:"), "\(command) --help")
        }
    }

    @Test("pool drain and remove name what is wrong with an address or IPv6 prefix before asking the allocator")
    func poolTargetErrors() async throws {
        let refusals: [(String, String)] = [
            ("2001:db8:10::1/48", "invalid IPv6 prefix '2001:db8:10::1/48': bits are set beyond the prefix length; did you mean '2001:db8:10::/48'?"),
            ("2001:db8:10::/129", "invalid IPv6 prefix '2001:db8:10::/129': prefix length '129' must be a number from 0 to 128"),
            ("2001:db8:10::", "invalid IPv6 prefix '2001:db8:10::': the prefix length is missing"),
            ("203.0.113.300", "'203.0.113.300' is neither an IPv4 address of the pool (203.0.113.10) nor one of its IPv6 prefixes"),
        ]
        for command in ["drain", "remove"] {
            for (target, message) in refusals {
                // No allocator listens on the port named: the error must come before any request.
                let refused = try await run("pool", command, target, "--server", "http://127.0.0.1:9", "--token", "unused")
                #expect(refused.status != 0 && refused.errorOutput.contains(message), "pool \(command) \(target): \(refused.errorOutput)")
            }
        }
    }

    @Test("edge render prints the rules for a table file and changes nothing; bad options are named")
    func edgeRender() async throws {
        let directory = try TemporaryDirectory()
        let table = try directory.write("slices.json", """
            {"version": 3, "slices": [
              {"address": "203.0.113.10", "index": 0, "ports": "1024-2047", "state": "leased", "host": "h1"},
              {"address": "203.0.113.10", "index": 1, "ports": "2048-3071", "state": "leased", "host": "h7"}]}
            """)
        let rendered = try await CommandRunner.run(["edge", "render", "--table", table, "--host", "h1=192.0.2.2"])
        #expect(rendered.status == 0, "\(rendered.errorOutput)")
        #expect(rendered.output.hasPrefix("table ip portslice_edge\ndelete table ip portslice_edge\n"))
        #expect(rendered.output.contains("1024-2047 : 0x50530001") && rendered.output.contains("2048-3071 : 0x5053fff4"))
        #expect(rendered.errorOutput.contains("host h7 holds slices but has no next hop here"))
        let guardRules = try await CommandRunner.run(["edge", "render", "--table", table, "--host-guard", "h1"])
        #expect(guardRules.output.contains("203.0.113.10 . 1024-2047") && !guardRules.output.contains("2048-3071"))

        let refusals: [([String], String)] = [
            (["--host", "h1"], "is not NAME=IPV4 or NAME=IPV4,IPV6"),
            (["--host", "h1=192.0.2.2", "--host", "h1=192.0.2.6"], "names 'h1' twice"),
            ([], "name the hosts behind this edge"),
            (["--host", "h1=192.0.2.2", "--host-guard", "h1"], "run them as two commands"),
        ]
        for (options, message) in refusals {
            let refused = try await CommandRunner.run(["edge", "render", "--table", table] + options)
            #expect(refused.status != 0 && refused.errorOutput.contains(message), "\(options): \(refused.errorOutput)")
        }
        let conflicting = try directory.write("conflict.json", """
            {"version": 4, "slices": [
              {"address": "203.0.113.10", "index": 0, "ports": "1024-2047", "state": "free"},
              {"address": "203.0.113.10", "index": 1, "ports": "2000-3071", "state": "free"}]}
            """)
        let refusedTable = try await CommandRunner.run(["edge", "render", "--table", conflicting, "--host", "h1=192.0.2.2"])
        #expect(refusedTable.status != 0 && refusedTable.errorOutput.contains("share ports"))
    }

    private func sysctls(range: String, reserved: String) throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        try directory.write("ip_local_port_range", "\(range)\n")
        try directory.write("ip_local_reserved_ports", "\(reserved)\n")
        return directory
    }

    @Test func planFailsAndSaysTheFixWhenTheKernelWouldIgnoreSlices() async throws {
        let host = try sysctls(range: "32768\t60999", reserved: "")
        let result = try await run("plan", "--slice-size", "4096", "--sysctl-directory", host.url.path)
        #expect(result.status == 1)
        #expect(result.output.contains("15 allocatable slices of 4096 ports in 1024-65535"))
        #expect(result.output.contains("fix: sysctl -w net.ipv4.ip_local_port_range=\"1024 62463\""))
    }

    @Test func planPassesOnAWideRangeAndSkipsReservedPorts() async throws {
        let host = try sysctls(range: "1024 65535", reserved: "5000-5001")
        let result = try await run(
            "plan", "--range", "4000-7000", "--slice-size", "1000", "--sysctl-directory", host.url.path, "--format", "json")
        #expect(result.status == 0, "\(result.errorOutput)")
        let report = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        let plan = try #require(report?["plan"] as? [String: Any])
        let slices = try #require(plan["slices"] as? [[String: Any]])
        // The reserved ports split the range: 4000-4999, then 5002-7000 holds one more slice.
        #expect(slices.compactMap { $0["ports"] as? String } == ["4000-4999", "5002-6001"])
        let findings = try #require(report?["hostCheck"] as? [[String: Any]])
        #expect(findings.first?["severity"] as? String == "ok")
    }

    @Test func planRejectsConflictingLayouts() async throws {
        let result = try await run("plan", "--slices", "4", "--slice-size", "100", "--no-host-check")
        #expect(result.status == 64)
        #expect(result.errorOutput.contains("Choose one layout"))
        let bad = try await run("plan", "--range", "2000-1000", "--no-host-check")
        #expect(bad.status == 1)
        #expect(bad.errorOutput.contains("invalid port range '2000-1000': the lower bound is above the upper bound"))
    }

    @Test func planPrintsRFC7597PortSets() async throws {
        let result = try await run("plan", "--psid-offset", "6", "--psid-length", "8", "--no-host-check")
        #expect(result.status == 0)
        #expect(result.output.contains("52     1232-1235,2256-2259,... (63 runs)  252    0x34  allocatable"))
    }

    @Test func geofeedCheckListsEveryErrorAndFails() async throws {
        let files = try TemporaryDirectory()
        let good = try files.write("good.csv", "# ok\n192.0.2.0/24,US,US-CA,Los Angeles,\n")
        let bad = try files.write("bad.csv", "192.0.2.0/24,US,,,\n192.0.2.0/24,US,,,\n198.51.100.1/24,ZZ,,,\n")
        let result = try await run("geofeed", "check", good, bad)
        #expect(result.status == 1)
        #expect(result.output.contains("\(good): 1 entry, ok"))
        #expect(result.output.contains("\(bad):2: duplicate prefix 192.0.2.0/24, first given on line 1"))
        #expect(result.output.contains("\(bad):3: invalid prefix '198.51.100.1/24'"))
        #expect(result.output.contains("\(bad): 1 entry, 2 errors"))
        let clean = try await run("geofeed", "check", good)
        #expect(clean.status == 0)
        let missing = try await run("geofeed", "check", files.url.appendingPathComponent("nope.csv").path)
        #expect(missing.status == 1)
        #expect(missing.errorOutput.contains("geofeed '\(files.url.path)/nope.csv' does not exist"))
    }

    @Test func geofeedFormatCanonicalises() async throws {
        let files = try TemporaryDirectory()
        let feed = try files.write("f.csv", "2001:DB8:0::/48,de,de-be,Berlin,,MOBILE\n192.0.2.0/24,us,,,\n")
        let result = try await run("geofeed", "format", feed)
        #expect(result.status == 0)
        #expect(result.output == "192.0.2.0/24,US,,,\n2001:db8::/48,DE,DE-BE,Berlin,,mobile\n")
    }

    @Test func lookupShowsTraitsAndEgress() async throws {
        let files = try TemporaryDirectory()
        let feed = try files.write("clients.csv", "2001:db8::/32,US,US-CA,Los Angeles,,residential,high\n")
        let pool = try files.write("pool.csv", """
            203.0.113.10/32,US,US-CA,Los Angeles,,residential,high
            203.0.113.11/32,US,US-NY,New York,,residential,high
            203.0.113.12/32,DE,DE-BE,Berlin,,hosting,low
            """)
        let result = try await run("lookup", "2001:db8::1", "--feed", feed, "--pool", pool)
        #expect(result.status == 0, "\(result.errorOutput)")
        #expect(result.output.contains("prefix        2001:db8::/32"))
        #expect(result.output.contains("traits        US/US-CA/Los Angeles, residential, reputation high"))
        #expect(result.output.contains("egress        203.0.113.10"))
        let json = try await run("lookup", "198.51.100.1", "--feed", feed, "--pool", pool, "--format", "json")
        let report = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect(report?["prefix"] == nil)
        #expect((report?["egress"] as? [String: Any])?["address"] != nil)
        let badAddress = try await run("lookup", "2001:db8:::1", "--feed", feed)
        #expect(badAddress.status == 1)
        #expect(badAddress.errorOutput.contains("invalid address '2001:db8:::1'"))
        let noFeed = try await run("lookup", "192.0.2.1")
        #expect(noFeed.status == 64)
        #expect(noFeed.errorOutput.contains("Give at least one client geofeed with --feed FILE."))
    }

    /// A slice of this namespace's own range on 127.0.0.1: usable without root.
    private func loopbackSlice() throws -> String {
        let range = try HostNetwork.portSettings().localPortRange
        let lower = range.lower + UInt16.random(in: 0...1000)
        return "127.0.0.1:\(lower)-\(lower + 15)"
    }

    @Test func doctorPassesForAUsableSliceAndNamesTheFixOtherwise() async throws {
        let good = try await run("doctor", "--slice", try loopbackSlice())
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.contains("ok: 127.0.0.1 is an address of this host"))
        #expect(good.output.contains("sock_diag answers exact lookups"))
        let notLocal = try await run("doctor", "--slice", "192.0.2.77:40000-40015")
        #expect(notLocal.status == 1)
        #expect(notLocal.output.contains("fix: ip address add 192.0.2.77/32 dev lo"))
        let bad = try await run("doctor", "--slice", "192.0.2.77")
        #expect(bad.status == 1)
        #expect(bad.errorOutput.contains("invalid endpoint '192.0.2.77': write a slice as ADDRESS:LOW-HIGH"))
    }

    @Test func connectPrintsTheTupleFromTheSlice() async throws {
        let listener = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let slice = try loopbackSlice()
        for extra in [[], ["--strategy", "portSearch"], ["--udp"]] {
            let result = try await CommandRunner.run(["connect", "--from", slice] + extra + ["127.0.0.1:\(listener.endpoint.port)"])
            #expect(result.status == 0, "\(extra): \(result.errorOutput)")
            let fields = result.output.split(separator: " ")
            let local = try Endpoint(parsing: String(fields[1]))
            let sliceRange = try EgressSlice(parsing: slice).ports
            #expect(fields[0] == (extra == ["--udp"] ? "udp" : "tcp"))
            #expect(sliceRange.contains(local.port), "\(result.output)")
            #expect(fields[3] == "127.0.0.1:\(listener.endpoint.port)")
        }
        let refused = try await run("connect", "--from", slice, "--local-port", "80", "127.0.0.1:\(listener.endpoint.port)")
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("local port 80 is not in the slice"))
        let closed = try await run("connect", "--from", slice, "127.0.0.1:\(listener.endpoint.port &+ 1)")
        #expect(closed.status == 1)
        #expect(closed.errorOutput.contains("connecting to 127.0.0.1:\(listener.endpoint.port &+ 1) from \(slice) failed: Connection refused"))
        let unknown = try await run("connect", "--from", slice, "no-such-host.invalid:80")
        #expect(unknown.status == 1)
        #expect(unknown.errorOutput.contains("cannot resolve 'no-such-host.invalid'"))
    }

    @Test func benchCoreReportsEveryRowWithItsPeer() async throws {
        let result = try await run("bench", "core", "--prefixes", "2000", "--pool", "50", "--seconds", "0.05", "--format", "json")
        #expect(result.status == 0, "\(result.errorOutput)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]])
        #expect(rows.compactMap { $0["metric"] as? String } == [
            "geofeed lines parsed/s", "bytes per prefix (IPv4 table)", "IPv4 longest-prefix lookups/s (1 core)", "egress choices/s (pool of 50)",
            "resolver cache lookups/s (1 core)", "DNS answers parsed/s (CNAME + 2 A)",
        ])
        // Every row but the DNS parser's (no peer of the same accounting exists) has its peer measured.
        #expect(rows.dropLast().allSatisfy { ($0["peer"] as? String).map { !$0.isEmpty && $0 != "-" } == true })
    }
}
