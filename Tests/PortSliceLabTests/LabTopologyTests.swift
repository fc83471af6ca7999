import Testing
import PortSliceCore
@testable import PortSliceLab

@Suite("Lab topology")
struct LabTopologyTests {
    static let documentation = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"].map { IPv4Prefix($0)! }
    static let documentation6 = IPv6Prefix("2001:db8::/32")!

    @Test("every address the lab configures or routes to is in a documentation prefix")
    func documentationPrefixesOnly() throws {
        let topology = try LabTopology(hosts: LabTopology.maximumHosts, addresses: LabTopology.maximumAddresses)
        var seen = 0, seen6 = 0
        for step in topology.buildSteps {
            for word in step {
                let text = word.split(separator: "/").first.map(String.init) ?? word
                if let address = try? IPv6Address(parsing: text) {
                    seen6 += 1
                    #expect(Self.documentation6.contains(address), "\(step.joined(separator: " "))")
                }
                guard let address = try? IPv4Address(parsing: text) else { continue }
                seen += 1
                #expect(Self.documentation.contains { $0.contains(address) }, "\(step.joined(separator: " "))")
            }
        }
        #expect(seen > 0)
        #expect(seen6 == 5 + 3 * LabTopology.maximumHosts)
        #expect(Self.documentation6.contains(LabTopology.prefixPool.network))
    }

    @Test("hosts get distinct /30 links, the edge side is each host's next hop, and names are psl-*")
    func addressing() throws {
        let topology = try LabTopology(hosts: 3, addresses: 2)
        #expect(topology.namespaces == ["psl-edge", "psl-inet", "psl-far", "psl-h1", "psl-h2", "psl-h3"])
        #expect(topology.hostIndices.map { "\(topology.edgeSide(ofHost: $0))" } == ["192.0.2.1", "192.0.2.5", "192.0.2.9"])
        #expect(topology.hostIndices.map { "\(topology.hostSide(ofHost: $0))" } == ["192.0.2.2", "192.0.2.6", "192.0.2.10"])
        #expect(topology.sharedAddresses.map(\.description) == ["203.0.113.10", "203.0.113.11"])
        #expect(topology.hostIndices.map { "\(topology.edgeSide6(ofHost: $0))" } == ["2001:db8:ffff:1::1", "2001:db8:ffff:2::1", "2001:db8:ffff:3::1"])
        #expect(topology.hostIndices.map { "\(topology.hostSide6(ofHost: $0))" } == ["2001:db8:ffff:1::2", "2001:db8:ffff:2::2", "2001:db8:ffff:3::2"])
        let loopbackAddresses = topology.buildSteps.filter { $0.contains("lo") && $0.contains("address") }
        #expect(loopbackAddresses.count == 3 * 2)
    }

    @Test("sizes out of range are refused with the option named", arguments: [(0, 1), (61, 1), (3, 0), (3, 51)])
    func sizes(hosts: Int, addresses: Int) {
        #expect(throws: LabError.self) { try LabTopology(hosts: hosts, addresses: addresses) }
    }
}
