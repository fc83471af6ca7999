import PortSliceCore
import Testing
@testable import PortSliceProxy

@Suite("recent flows")
struct RecentFlowsTests {
    @Test("keeps the last flows up to its capacity, oldest first, the oldest replaced as new ones come")
    func ring() throws {
        let recent = RecentFlows(capacity: 3)
        let slice = try EgressSlice(parsing: "192.0.2.1:1024-2047")
        for port in UInt16(1)...5 {
            recent.record(from: IPEndpoint(.v4(IPv4Address(192, 0, 2, 1)), 1023 + port), to: IPEndpoint(.v4(IPv4Address(198, 51, 100, 7)), port),
                          source: .slice(slice), client: .v4(IPv4Address(203, 0, 113, 9)), transport: port.isMultiple(of: 2) ? .udp : .tcp)
            let expected = (max(1, Int(port) - 2)...Int(port)).map { "198.51.100.7:\($0)" }
            #expect(recent.all.map(\.destination) == expected, "after \(port) flows")
        }
        let newest = try #require(recent.all.last)
        #expect(newest.egress == "192.0.2.1:1028" && newest.transport == "tcp" && newest.client == "203.0.113.9" && newest.slice == "192.0.2.1:1024-2047")
    }
}
