import Foundation
import Testing
import PortSliceCore
@testable import PortSliceEdge

func entry(_ address: String, _ index: Int, _ ports: String, _ state: String, _ host: String? = nil) -> SliceTable.Entry {
    SliceTable.Entry(address: try! IPv4Address(parsing: address), index: index, ports: try! PortSet(parsing: ports), state: SliceStatus(rawValue: state)!, host: host)
}

let twoHosts = try! EdgeHost.numbered(["h2": IPv4Address(192, 0, 2, 6), "h1": IPv4Address(192, 0, 2, 2)])

@Suite("Edge ruleset rendering")
struct RulesetTests {
    @Test("hosts are numbered by name, so marks and tables do not depend on the order given")
    func hostNumbers() {
        #expect(twoHosts.map(\.name) == ["h1", "h2"])
        #expect(twoHosts.map(\.mark) == [0x5053_0001, 0x5053_0002])
        #expect(twoHosts.map(\.routeTable) == [53001, 53002])
        #expect(twoHosts.map(\.rulePriority) == [28001, 28002])
    }

    @Test("a table renders to the golden edge rule set")
    func goldenEdge() throws {
        let table = SliceTable(version: 7, slices: [
            entry("203.0.113.10", 1, "30000-39999", "leased", "h2"),
            entry("203.0.113.10", 0, "20000-29999", "leased", "h1"),
            entry("203.0.113.10", 2, "40000-40099", "quarantined"),
            entry("203.0.113.11", 0, "1024-1535,5120-5631", "free"),
            entry("203.0.113.11", 1, "2048", "leased", "h9"),
        ])
        let plan = try SteeringPlan(table: table, hosts: twoHosts)
        #expect(plan.unroutableHosts == ["h9"])
        let golden = """
            table ip portslice_edge
            delete table ip portslice_edge
            table ip portslice_edge {
              comment "portslice edge: slice table version 7; managed by portslice, do not edit"
              counter free { packets 3 bytes 180 }
              counter quarantined { }
              counter draining { }
              counter unroutable { }
              counter unowned { }
              counter fragments { }
              set shared {
                type ipv4_addr
                elements = {
                  203.0.113.10,
                  203.0.113.11
                }
              }
              map by_address {
                type ipv4_addr : verdict
                elements = {
                  203.0.113.10 : jump a_203_0_113_10,
                  203.0.113.11 : jump a_203_0_113_11
                }
              }
              map a_203_0_113_10_ports {
                type inet_service : mark; flags interval
                elements = {
                  20000-29999 : 0x50530001,
                  30000-39999 : 0x50530002,
                  40000-40099 : 0x5053fff2
                }
              }
              map a_203_0_113_10_quoted {
                typeof @th,224,16 : meta mark; flags interval
                elements = {
                  20000-29999 : 0x50530001,
                  30000-39999 : 0x50530002,
                  40000-40099 : 0x5053fff2
                }
              }
              chain a_203_0_113_10 {
                meta l4proto { tcp, udp } meta mark set th dport map @a_203_0_113_10_ports
                icmp type { destination-unreachable, time-exceeded, parameter-problem } @th,64,8 0x45 meta mark set @th,224,16 map @a_203_0_113_10_quoted
              }
              map a_203_0_113_11_ports {
                type inet_service : mark; flags interval
                elements = {
                  1024-1535 : 0x5053fff1,
                  2048 : 0x5053fff4,
                  5120-5631 : 0x5053fff1
                }
              }
              map a_203_0_113_11_quoted {
                typeof @th,224,16 : meta mark; flags interval
                elements = {
                  1024-1535 : 0x5053fff1,
                  2048 : 0x5053fff4,
                  5120-5631 : 0x5053fff1
                }
              }
              chain a_203_0_113_11 {
                meta l4proto { tcp, udp } meta mark set th dport map @a_203_0_113_11_ports
                icmp type { destination-unreachable, time-exceeded, parameter-problem } @th,64,8 0x45 meta mark set @th,224,16 map @a_203_0_113_11_quoted
              }
              chain prerouting {
                type filter hook prerouting priority raw; policy accept;
                ip saddr @shared notrack accept
                ip daddr != @shared accept
                notrack
                ip frag-off & 0x1fff != 0 counter name fragments drop
                ip daddr vmap @by_address
                meta mark 0x5053fff1 counter name free drop
                meta mark 0x5053fff2 counter name quarantined drop
                meta mark 0x5053fff3 counter name draining drop
                meta mark 0x5053fff4 counter name unroutable drop
                meta mark & 0xffff0000 != 0x50530000 counter name unowned drop
              }
              chain output {
                type route hook output priority raw; policy accept;
                ip daddr != @shared accept
                notrack
                ip protocol icmp ip daddr vmap @by_address
              }
            }

            """
        #expect(EdgeRuleset.render(plan, counters: ["free": (3, 180)]) == golden)
    }

    @Test("the host guard holds only the host's own leased slices")
    func goldenGuard() throws {
        let table = SliceTable(version: 3, slices: [
            entry("203.0.113.10", 0, "20000-29999", "leased", "h1"),
            entry("203.0.113.10", 1, "30000-39999", "leased", "h2"),
            entry("203.0.113.11", 0, "1024-1535,5120-5631", "leased", "h1"),
        ])
        let golden = """
            table ip portslice_guard
            delete table ip portslice_guard
            table ip portslice_guard {
              comment "portslice host guard for h1: slice table version 3; managed by portslice, do not edit"
              counter outside { }
              counter foreign { }
              counter icmp_errors { }
              set shared {
                type ipv4_addr
                elements = {
                  203.0.113.10,
                  203.0.113.11
                }
              }
              set owned {
                type ipv4_addr . inet_service; flags interval
                elements = {
                  203.0.113.10 . 20000-29999,
                  203.0.113.11 . 1024-1535,
                  203.0.113.11 . 5120-5631
                }
              }
              chain output {
                type filter hook output priority raw; policy accept;
                ip saddr != @shared accept
                notrack
                oifname "lo" accept
                meta l4proto { tcp, udp } ip saddr . th sport != @owned counter name outside drop
              }
              chain prerouting {
                type filter hook prerouting priority raw; policy accept;
                ip daddr != @shared accept
                notrack
                iifname "lo" accept
                meta l4proto { tcp, udp } ip daddr . th dport != @owned counter name foreign drop
                icmp type { destination-unreachable, time-exceeded, parameter-problem } counter name icmp_errors
              }
            }

            """
        #expect(try HostGuardRuleset.render(table, host: "h1") == golden)
        let nothingHeld = try HostGuardRuleset.render(table, host: "h3")
        #expect(nothingHeld.contains("set owned {\n    type ipv4_addr . inet_service; flags interval\n  }"))
    }

    @Test("an empty table renders without element lists, which nft would refuse")
    func emptyTable() throws {
        let script = EdgeRuleset.render(try SteeringPlan(table: SliceTable(version: 0, slices: []), hosts: twoHosts))
        #expect(!script.contains("elements"))
    }

    @Test("malformed and conflicting tables are refused with the entries named", arguments: [
        ([entry("203.0.113.10", 0, "1024-2047", "free"), entry("203.0.113.10", 1, "2000-3000", "free")], "share ports (1024-2047 and 2000-3000)"),
        ([entry("203.0.113.10", 0, "1024-2047", "free"), entry("203.0.113.10", 0, "3000-4000", "free")], "203.0.113.10#0 appears twice"),
        ([entry("203.0.113.10", 0, "1024-2047", "leased")], "leased but names no host"),
        ([entry("203.0.113.10", 0, "", "free")], "has no ports"),
    ])
    func refused(slices: [SliceTable.Entry], message: String) {
        #expect {
            try SteeringPlan(table: SliceTable(version: 1, slices: slices), hosts: twoHosts)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test("the same ports on two different addresses do not conflict")
    func sameSliceOnTwoAddresses() throws {
        let plan = try SteeringPlan(table: SliceTable(version: 1, slices: [
            entry("203.0.113.10", 0, "1024-2047", "leased", "h1"), entry("203.0.113.11", 0, "1024-2047", "leased", "h2"),
        ]), hosts: twoHosts)
        #expect(plan.runs.map(\.mark) == [0x5053_0001, 0x5053_0002])
    }

    @Test("counters are read from nft's listing however it breaks lines, and blanked for comparison")
    func counterListing() {
        let listing = """
            table ip portslice_edge {
            \tcounter free {
            \t\tpackets 12 bytes 840
            \t}
            \tcounter "unowned" { packets 0 bytes 0 }
            \tchain prerouting {
            \t\tmeta mark 0x5053fff1 counter name "free" drop
            \t}
            }
            """
        let counters = OwnedTable.counters(inListing: listing)
        #expect(counters.count == 2)
        #expect(counters["free"]?.packets == 12 && counters["free"]?.bytes == 840)
        #expect(counters["unowned"]?.packets == 0)
        #expect(OwnedTable.shape(ofListing: listing) == OwnedTable.shape(ofListing: listing.replacing("packets 12 bytes 840", with: "packets 99 bytes 9")))
    }

    @Test("a slice table file is read in the form the allocator serves")
    func tableFileForm() throws {
        let json = #"{"version":4,"slices":[{"address":"203.0.113.10","index":0,"ports":"1024-2047","state":"leased","host":"h1"}]}"#
        let table = try SliceTableFile.decode(Data(json.utf8), from: "test")
        #expect(table.version == 4 && table.slices.first?.host == "h1")
        #expect(throws: SliceTableError.self) { try SliceTableFile.decode(Data("{\"version\":1}".utf8), from: "test") }
        // A state the contract does not know is refused when read, naming it.
        let unknownState = json.replacingOccurrences(of: #""state":"leased""#, with: #""state":"borrowed""#)
        #expect { try SliceTableFile.decode(Data(unknownState.utf8), from: "test") } throws: { "\($0)".contains("borrowed") }
    }
}

func prefixEntry(_ prefix: String, _ state: String, _ host: String? = nil) -> SliceTable.PrefixEntry {
    SliceTable.PrefixEntry(prefix: IPv6Prefix(prefix)!, state: SliceStatus(rawValue: state)!, host: host)
}

@Suite("Edge IPv6 prefix routes")
struct PrefixRouteTests {
    /// h1 has an IPv6 next hop, h2 does not.
    static let hosts = try! EdgeHost.numbered(["h1": IPv4Address(192, 0, 2, 2), "h2": IPv4Address(192, 0, 2, 6)],
                                              ipv6: ["h1": IPv6Address("2001:db8:ffff:1::2")!])

    @Test("each leased prefix goes to its host's IPv6 next hop; quarantined ones and those of a host without one are dropped, with the host named")
    func routes() throws {
        let table = SliceTable(version: 9, slices: [], prefixes: [
            prefixEntry("2001:db8:100:2::/64", "leased", "h2"),
            prefixEntry("2001:db8:100:1::/64", "leased", "h1"),
            prefixEntry("2001:db8:100:3::/64", "quarantined"),
            prefixEntry("2001:db8:100:4::/64", "leased", "h9"),
        ])
        let plan = try SteeringPlan(table: table, hosts: Self.hosts)
        #expect(plan.prefixRoutes.map(\.command) == [
            "route replace 2001:db8:100:1::/64 via 2001:db8:ffff:1::2 table 53000",
            "route replace blackhole 2001:db8:100:2::/64 table 53000",
            "route replace blackhole 2001:db8:100:3::/64 table 53000",
            "route replace blackhole 2001:db8:100:4::/64 table 53000",
        ])
        #expect(plan.prefixRoutes.map(\.host) == ["h1", nil, nil, nil])
        #expect(plan.hostsWithoutIPv6 == ["h2": [IPv6Prefix("2001:db8:100:2::/64")!], "h9": [IPv6Prefix("2001:db8:100:4::/64")!]])

        let rendering = try EdgeRole.edge(hosts: Self.hosts).render(table)
        #expect(rendering.prefixRoutes == plan.prefixRoutes)
        #expect(rendering.warnings == [
            "host h2 leases IPv6 prefix(es) 2001:db8:100:2::/64 but has no IPv6 next hop here (give its IPv6 next hop as --host h2=IPV4,IPV6); they are dropped",
            "host h9 leases IPv6 prefix(es) 2001:db8:100:4::/64 but has no IPv6 next hop here (add --host h9=IPV4,IPV6); they are dropped",
        ])
        // The IPv6 table rides in the same script, so one nft transaction changes both.
        #expect(rendering.script.hasPrefix("table ip portslice_edge\n"))
        #expect(rendering.script.contains("table ip6 portslice_edge6 {"))
    }

    @Test("the IPv6 table keeps the prefixes' packets out of connection tracking (golden)")
    func goldenIPv6Table() throws {
        let plan = try SteeringPlan(table: SliceTable(version: 3, slices: [], prefixes: [
            prefixEntry("2001:db8:100:1::/64", "leased", "h1"), prefixEntry("2001:db8:100:3::/64", "quarantined"),
        ]), hosts: Self.hosts)
        #expect(EdgeRuleset.renderIPv6(plan) == """
            table ip6 portslice_edge6
            delete table ip6 portslice_edge6
            table ip6 portslice_edge6 {
              comment "portslice edge: IPv6 prefixes of slice table version 3; managed by portslice, do not edit"
              set prefixes {
                type ipv6_addr; flags interval
                elements = {
                  2001:db8:100:1::/64,
                  2001:db8:100:3::/64
                }
              }
              chain prerouting {
                type filter hook prerouting priority raw; policy accept;
                ip6 saddr @prefixes notrack
                ip6 daddr @prefixes notrack
              }
              chain output {
                type route hook output priority raw; policy accept;
                ip6 daddr @prefixes notrack
              }
            }

            """)
        let empty = EdgeRuleset.renderIPv6(try SteeringPlan(table: SliceTable(version: 0, slices: []), hosts: Self.hosts))
        #expect(!empty.contains("elements"))
    }

    @Test("a leased prefix without a holder and overlapping prefixes are refused, named", arguments: [
        ([prefixEntry("2001:db8:100:1::/64", "leased")], "prefix 2001:db8:100:1::/64 is leased but names no host"),
        ([prefixEntry("2001:db8:100:1::/64", "leased", "h1"), prefixEntry("2001:db8:100::/48", "quarantined")],
         "prefixes 2001:db8:100::/48 and 2001:db8:100:1::/64 overlap"),
        ([prefixEntry("2001:db8:100:1::/64", "leased", "h1"), prefixEntry("2001:db8:100:1::/64", "leased", "h2")],
         "prefixes 2001:db8:100:1::/64 and 2001:db8:100:1::/64 overlap"),
    ])
    func refused(prefixes: [SliceTable.PrefixEntry], message: String) {
        #expect {
            try SteeringPlan(table: SliceTable(version: 1, slices: [], prefixes: prefixes), hosts: Self.hosts)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test("routes are read back from ip's listing, blackholes included")
    func listing() {
        let listing = """
            2001:db8:100:1::/64 via 2001:db8:ffff:1::2 dev h1 metric 1024 pref medium
            blackhole 2001:db8:100:3::/64 dev lo metric 1024 pref medium

            """
        let expected: [IPv6Prefix: IPv6Address?] = [
            IPv6Prefix("2001:db8:100:1::/64")!: IPv6Address("2001:db8:ffff:1::2")!,
            IPv6Prefix("2001:db8:100:3::/64")!: nil,
        ]
        #expect(PrefixRoutes.routes(inListing: listing) == expected)
    }
}
