import Synchronization
import Testing
import PortSliceCore
import PortSliceProxy
import PortSliceSockets

@Suite("Destination policy")
struct DestinationPolicyTests {
    /// The IANA IPv4 special-purpose registry (its nested entries are covered by their parent)
    /// plus multicast, written out here rather than read from the policy, with the names refusals use.
    static let ipv4Registry: [(prefix: String, name: String)] = [
        ("0.0.0.0/8", "this network"), ("10.0.0.0/8", "private use"), ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private use"),
        ("192.0.0.0/24", "IETF protocol assignments"), ("192.0.2.0/24", "documentation, TEST-NET-1"), ("192.31.196.0/24", "AS112-v4"),
        ("192.52.193.0/24", "AMT"), ("192.88.99.0/24", "deprecated 6to4 relay anycast"), ("192.168.0.0/16", "private use"),
        ("192.175.48.0/24", "direct delegation AS112 service"), ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation, TEST-NET-2"), ("203.0.113.0/24", "documentation, TEST-NET-3"),
        ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"), ("255.255.255.255/32", "limited broadcast"),
    ]

    /// The IANA IPv6 special-purpose registry, entries inside 2001::/23 left to it.
    static let ipv6Registry: [(prefix: String, name: String)] = [
        ("::/128", "unspecified address"), ("::1/128", "loopback"), ("::ffff:0:0/96", "IPv4-mapped"),
        ("64:ff9b::/96", "IPv4-IPv6 translation"), ("64:ff9b:1::/48", "local-use IPv4-IPv6 translation"), ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"), ("2001:db8::/32", "documentation"), ("2002::/16", "6to4"),
        ("2620:4f:8000::/48", "direct delegation AS112 service"), ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing (SRv6) SIDs"), ("fc00::/7", "unique local"), ("fe80::/10", "link-local unicast"),
        ("ff00::/8", "multicast"),
    ]

    static let registry = (ipv4Registry + ipv6Registry).map { SpecialPurposeRange(prefix: IPPrefix($0.prefix)!, name: $0.name) }

    static func range(_ prefix: String, _ name: String) -> SpecialPurposeRange { SpecialPurposeRange(prefix: IPPrefix(prefix)!, name: name) }

    /// A policy that knows no host addresses, so only the ranges speak.
    static func policy(hostAddresses: [InterfaceAddress] = []) -> DestinationPolicy {
        DestinationPolicy(hostAddresses: InterfaceAddressSnapshot(read: { hostAddresses }))
    }

    /// The most specific registry entry holding `address` (240.0.0.0/4's last address is the
    /// limited broadcast address), as the test's own table says.
    static func expectedRange(of address: IPAddress) -> SpecialPurposeRange? {
        registry.filter { $0.prefix.contains(address) }.max { $0.prefix.length < $1.prefix.length }
    }

    /// The first and last address of `prefix` and, where they exist, the addresses just before and after it.
    static func edges(of prefix: IPPrefix) -> (first: IPAddress, all: [IPAddress]) {
        switch prefix {
        case .v4(let prefix): (.v4(prefix.first), edges(of: prefix).map(IPAddress.v4))
        case .v6(let prefix): (.v6(prefix.first), edges(of: prefix).map(IPAddress.v6))
        }
    }

    static func edges<Address>(of prefix: Prefix<Address>) -> [Address] {
        let before = prefix.first.bits.subtractingReportingOverflow(1), after = prefix.last.bits.addingReportingOverflow(1)
        return (before.overflow ? [] : [Address(bits: before.partialValue)]) + [prefix.first, prefix.last]
            + (after.overflow ? [] : [Address(bits: after.partialValue)])
    }

    @Test("every special-purpose range refuses its first and last address with its name and prefix; the neighbours outside are allowed unless special themselves",
          arguments: registry)
    func rangeEdges(range: SpecialPurposeRange) throws {
        let policy = Self.policy()
        let (first, edges) = Self.edges(of: range.prefix)
        #expect(policy.refusal(for: first) == .specialPurpose(first, range))
        for address in edges {
            #expect(policy.refusal(for: address) == Self.expectedRange(of: address).map { .specialPurpose(address, $0) }, "\(address)")
        }
    }

    @Test("the policy's tables are exactly the registries")
    func tablesMatchTheRegistries() {
        #expect(SpecialPurposeRange.ipv4 + SpecialPurposeRange.ipv6 == Self.registry)
    }

    @Test("addresses just outside the ranges, written out, are allowed; a refusal names the address, the range and --allow")
    func namedBoundaries() throws {
        let policy = Self.policy()
        for allowed in ["9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.0.1.255", "192.0.3.0",
                        "198.17.255.255", "198.20.0.0", "223.255.255.255", "2000::", "2001:200::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
                        "2003::", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::", "fec0::", "2606:4700::1111"] {
            #expect(policy.refusal(for: try IPAddress(parsing: allowed)) == nil, "\(allowed)")
        }
        #expect(policy.refusal(for: IPv4Address(10, 1, 2, 3))?.description
                == "10.1.2.3 is in 10.0.0.0/8 (private use), refused by default; add a prefix holding it to the allow list (--allow) to permit it")
        #expect(policy.refusal(for: try IPAddress(parsing: "fe80::1"))?.description
                == "fe80::1 is in fe80::/10 (link-local unicast), refused by default; add a prefix holding it to the allow list (--allow) to permit it")
        #expect(policy.refusal(for: IPv4Address(255, 255, 255, 255)) == .specialPurpose(.v4(IPv4Address(255, 255, 255, 255)),
                                                                                        Self.range("255.255.255.255/32", "limited broadcast")))
    }

    @Test("an IPv4-mapped address is refused as such, naming the range of the IPv4 address inside it")
    func ipv4Mapped() throws {
        let policy = Self.policy()
        let privateMapped = try IPAddress(parsing: "::ffff:10.1.2.3")
        #expect(policy.refusal(for: privateMapped) == .specialPurpose(privateMapped, .ipv4Mapped))
        #expect(policy.refusal(for: privateMapped)?.description
                == "::ffff:10.1.2.3 is in ::ffff:0.0.0.0/96 (IPv4-mapped), refused by default, and 10.1.2.3 itself is in 10.0.0.0/8 (private use)")
        let loopbackMapped = try IPAddress(parsing: "::ffff:127.0.0.1")
        #expect(policy.refusal(for: loopbackMapped)?.description
                == "::ffff:127.0.0.1 is in ::ffff:0.0.0.0/96 (IPv4-mapped), refused by default, and 127.0.0.1 itself is in 127.0.0.0/8 (loopback)")
        let publicMapped = try IPAddress(parsing: "::ffff:1.1.1.1")
        #expect(policy.refusal(for: publicMapped)?.description == "::ffff:1.1.1.1 is in ::ffff:0.0.0.0/96 (IPv4-mapped), refused by default; ask for 1.1.1.1 itself")
    }

    @Test("the allow list opens a range, the deny list wins over it (in the mapped form too), loopback opens with allowLoopback")
    func allowAndDenyLists() throws {
        var policy = Self.policy()
        policy.allow = [try IPPrefix(parsing: "10.1.0.0/16"), try IPPrefix(parsing: "198.51.100.0/24"), try IPPrefix(parsing: "::ffff:0:0/96")]
        policy.deny = [try IPPrefix(parsing: "198.51.100.0/25")]
        #expect(policy.refusal(for: IPv4Address(10, 1, 2, 3)) == nil)
        #expect(policy.refusal(for: IPv4Address(10, 2, 0, 1)) == .specialPurpose(.v4(IPv4Address(10, 2, 0, 1)), Self.range("10.0.0.0/8", "private use")))
        #expect(policy.refusal(for: IPv4Address(198, 51, 100, 200)) == nil)
        #expect(policy.refusal(for: IPv4Address(198, 51, 100, 7)) == .denied(.v4(IPv4Address(198, 51, 100, 7)), by: try IPPrefix(parsing: "198.51.100.0/25")))
        #expect(policy.refusal(for: IPv4Address(198, 51, 100, 7))?.description == "198.51.100.7 is in the deny list (198.51.100.0/25)")
        let mapped = try IPAddress(parsing: "::ffff:198.51.100.7")
        #expect(policy.refusal(for: mapped) == .denied(mapped, by: try IPPrefix(parsing: "198.51.100.0/25")), "the mapped form does not slip past the deny list")
        #expect(policy.refusal(for: try IPAddress(parsing: "::ffff:10.9.9.9")) == nil, "an IPv6 allow prefix opens mapped addresses")

        #expect(policy.refusal(for: IPv4Address(127, 0, 0, 1)) == .specialPurpose(.v4(IPv4Address(127, 0, 0, 1)), .ipv4Loopback))
        policy.allowLoopback = true
        #expect(policy.refusal(for: IPv4Address(127, 0, 0, 1)) == nil)
        #expect(policy.refusal(for: IPv4Address(127, 255, 255, 254)) == nil)
        #expect(policy.refusal(for: try IPAddress(parsing: "::1")) == nil)
        #expect(policy.refusal(for: IPv4Address(10, 2, 0, 1)) != nil, "allowLoopback opens loopback only")
    }

    @Test("the egress addresses are refused unless the allow list names them")
    func egressAddresses() throws {
        var policy = Self.policy()
        let egress = IPv4Address(1, 1, 1, 10)
        #expect(policy.refusal(for: egress) == nil)
        #expect(policy.refusal(for: egress, egressAddresses: [IPv4Address(1, 1, 1, 11), egress]) == .egressAddress(.v4(egress)))
        #expect(policy.refusal(for: egress, egressAddresses: [egress])?.description == "1.1.1.10 is one of the proxy's own egress addresses")
        #expect(policy.refusal(for: egress, egressAddresses: [IPv4Address(1, 1, 1, 11)]) == nil)
        policy.allow = [try IPPrefix(parsing: "1.1.1.0/24")]
        #expect(policy.refusal(for: egress, egressAddresses: [egress]) == nil, "the allow list comes before the egress addresses")
    }

    @Test("every address of the IPv6 egress prefixes is refused as the proxy's own, before the special-purpose ranges, unless the allow list names it")
    func egressPrefixes() throws {
        var policy = Self.policy()
        let prefixes = [try IPv6Prefix(parsing: "2a00:1450:4001::/48"), try IPv6Prefix(parsing: "2001:db8:77::/48")]
        let inside = try IPAddress(parsing: "2a00:1450:4001:81c::200e"), outside = try IPAddress(parsing: "2a00:1450:4002::1")
        #expect(policy.refusal(for: inside) == nil)
        #expect(policy.refusal(for: inside, egressPrefixes: prefixes) == .egressAddress(inside))
        #expect(policy.refusal(for: inside, port: 443, egressPrefixes: prefixes)?.description == "2a00:1450:4001:81c::200e is one of the proxy's own egress addresses")
        #expect(policy.refusal(for: outside, egressPrefixes: prefixes) == nil)
        // A documentation address in an own prefix is named as the proxy's own, the more precise reason.
        let documentation = try IPAddress(parsing: "2001:db8:77::5")
        #expect(policy.refusal(for: documentation, egressPrefixes: prefixes) == .egressAddress(documentation))
        policy.allow = [try IPPrefix(parsing: "2a00:1450:4001::/48")]
        #expect(policy.refusal(for: inside, egressPrefixes: prefixes) == nil, "the allow list comes before the egress prefixes")
        policy.deny = [try IPPrefix(parsing: "2a00:1450:4001:81c::/64")]
        #expect(policy.refusal(for: inside, egressPrefixes: prefixes) == .denied(inside, by: try IPPrefix(parsing: "2a00:1450:4001:81c::/64")))
    }

    @Test("an address on one of the host's interfaces is refused, naming the interface, unless allowed")
    func injectedHostAddresses() throws {
        let v4 = IPAddress.v4(IPv4Address(85, 10, 20, 30)), v6 = try IPAddress(parsing: "2a01:4f8::30")
        var policy = Self.policy(hostAddresses: [InterfaceAddress(v4, on: "eth0"), InterfaceAddress(v6, on: "eth1"),
                                                 InterfaceAddress(.v4(IPv4Address(127, 0, 0, 1)), on: "lo")])
        #expect(policy.refusal(for: v4) == .hostAddress(v4, interface: "eth0"))
        #expect(policy.refusal(for: v4)?.description
                == "85.10.20.30 is one of this host's own addresses (interface eth0); add it to the allow list (--allow) to permit it")
        #expect(policy.refusal(for: v6) == .hostAddress(v6, interface: "eth1"))
        #expect(policy.refusal(for: IPv4Address(85, 10, 20, 31)) == nil)
        #expect(policy.refusal(for: IPv4Address(127, 0, 0, 1)) == .specialPurpose(.v4(IPv4Address(127, 0, 0, 1)), .ipv4Loopback),
                "a host address in a special range is named by its range")
        policy.allow = [try IPPrefix(parsing: "85.10.20.30/32")]
        #expect(policy.refusal(for: v4) == nil)
        policy.allow = []
        policy.allowLoopback = true
        #expect(policy.refusal(for: IPv4Address(127, 0, 0, 1)) == nil, "allowLoopback opens the loopback address that lo holds")
    }

    @Test("this machine's interface addresses: lo has 127.0.0.1, and each address outside the ranges is refused as a host address")
    func realHostAddresses() throws {
        let listed = try HostNetwork.interfaceAddresses()
        #expect(listed.contains(InterfaceAddress(.v4(IPv4Address(127, 0, 0, 1)), on: "lo")), "\(listed)")
        let snapshot = InterfaceAddressSnapshot()
        #expect(snapshot.interface(holding: .v4(IPv4Address(127, 0, 0, 1))) == "lo")
        for entry in listed {
            #expect(snapshot.interface(holding: entry.address) != nil, "\(entry)")
        }
        let policy = DestinationPolicy(hostAddresses: snapshot)
        for entry in listed {
            let refusal = policy.refusal(for: entry.address)
            if let range = SpecialPurposeRange.containing(entry.address) {
                #expect(refusal == .specialPurpose(entry.address, range), "\(entry)")
            } else {
                #expect(refusal == .hostAddress(entry.address, interface: snapshot.interface(holding: entry.address)!), "\(entry)")
            }
        }
    }
}

@Suite("Interface address snapshot")
struct InterfaceAddressSnapshotTests {
    /// Interfaces that a test changes: counts reads and answers with the list it holds now, or fails.
    final class FakeInterfaces: Sendable {
        struct Unlisted: Error {}
        let state = Mutex<(reads: Int, addresses: [InterfaceAddress], failing: Bool)>((0, [], false))

        func read() throws -> [InterfaceAddress] {
            try state.withLock { state in
                state.reads += 1
                if state.failing { throw Unlisted() }
                return state.addresses
            }
        }

        var reads: Int { state.withLock { $0.reads } }
    }

    @Test("the list is read once at start and again only when older than maximumAge")
    func readAgainWhenOld() async throws {
        let interfaces = FakeInterfaces()
        let added = IPAddress.v4(IPv4Address(85, 10, 20, 30))
        let snapshot = InterfaceAddressSnapshot(maximumAge: .milliseconds(200), read: { try interfaces.read() })
        interfaces.state.withLock { $0.addresses = [InterfaceAddress(added, on: "eth0")] }
        #expect((0..<10_000).allSatisfy { _ in snapshot.interface(holding: added) == nil }, "not known before the list is read again")
        #expect(interfaces.reads == 1)
        try await Task.sleep(for: .milliseconds(250))
        #expect(snapshot.interface(holding: added) == "eth0")
        #expect(snapshot.interface(holding: added) == "eth0")
        #expect(interfaces.reads == 2)
    }

    @Test("a failed read keeps the previous list")
    func failedReadKeepsTheList() async throws {
        let interfaces = FakeInterfaces()
        let kept = IPAddress.v4(IPv4Address(85, 10, 20, 30))
        interfaces.state.withLock { $0.addresses = [InterfaceAddress(kept, on: "eth0")] }
        let snapshot = InterfaceAddressSnapshot(maximumAge: .milliseconds(50), read: { try interfaces.read() })
        interfaces.state.withLock { $0.failing = true }
        try await Task.sleep(for: .milliseconds(100))
        #expect(snapshot.interface(holding: kept) == "eth0")
        #expect(interfaces.reads == 2)
    }
}
