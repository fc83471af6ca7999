import PortSliceCore
import Testing
@testable import PortSliceSockets

@Suite("Port occupancy hints")
struct PortOccupancyTests {
    static let destination = Endpoint(IPv4Address(198, 51, 100, 1), 443)
    static let other = Endpoint(IPv4Address(198, 51, 100, 2), 443)

    @Test func hintsOnlyOnceMostOfTheSliceIsHeldAndOnlyFreePorts() throws {
        let occupancy = PortOccupancy(span: try PortRange(40000, 40007), reserved: .empty)
        for port in UInt16(40000)...40004 { occupancy.hold(port, towards: Self.destination) }
        #expect(occupancy.believedFree(towards: Self.destination) == nil, "5 of 8 held: the kernel's own walk is short")
        occupancy.hold(40006, towards: Self.destination)
        var hints: Set<UInt16> = []
        for _ in 0..<4 { hints.insert(try #require(occupancy.believedFree(towards: Self.destination))) }
        #expect(hints == [40005, 40007], "successive hints spread over the free ports")
        #expect(occupancy.believedFree(towards: Self.other) == nil, "another destination holds nothing")
        occupancy.hold(40005, towards: Self.destination)
        occupancy.hold(40007, towards: Self.destination)
        #expect(occupancy.believedFree(towards: Self.destination) == nil, "all held: nothing to offer")
        occupancy.release(40003, towards: Self.destination)
        #expect(occupancy.believedFree(towards: Self.destination) == 40003)
        occupancy.hold(39999, towards: Self.destination)  // outside the span: ignored
        occupancy.release(40100, towards: Self.destination)
        #expect(occupancy.believedFree(towards: Self.destination) == 40003)
    }

    @Test func reservedPortsAreNeverOffered() throws {
        let occupancy = PortOccupancy(span: try PortRange(40000, 40003), reserved: PortSet(try PortRange(40001, 40002)))
        occupancy.hold(40000, towards: Self.destination)
        #expect(occupancy.believedFree(towards: Self.destination) == 40003)
        occupancy.release(40000, towards: Self.destination)
        occupancy.hold(40003, towards: Self.destination)
        #expect(occupancy.believedFree(towards: Self.destination) == 40000)
    }
}
