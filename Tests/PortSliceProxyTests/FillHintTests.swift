import Glibc
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceSockets
import PortSliceTestSupport
import Testing
@testable import PortSliceProxy

/// The dialer's one-port hints (which keep the kernel's fast path quick when a slice is nearly
/// full towards one destination) count the proxy's flows while they are open, though SwiftNIO
/// owns their descriptors.
@Suite("fill hints through the proxy")
struct FillHintTests {
    @Test("the proxy's open TCP flows count as held ports in their slice's dialer until they close")
    func proxyFlowsCounted() async throws {
        let slice = try EgressSlice(parsing: "127.0.0.2:42400-42463")
        let (echo, slices, proxy, stop) = try await DynamicSlicesTests().start(sendingFrom: slice)
        let dialer = try #require(slices.held.dialers[slice.address]?.first)
        try #require(dialer.tcpStrategy == .kernelRange, "the slice lies in the local port range, so the kernel range (with hints) is used")

        // Descriptors, kept open until the clients close.
        var flows: [CInt] = []
        for index in 0..<10 {
            let flow = try UnslicedConnect.tcp(to: proxy)
            #expect(try DynamicSlicesTests().connect(flow, to: echo.endpoint) == 0)
            try flow.send(Array("ping \(index)".utf8))
            #expect(try flow.receive(timeout: .seconds(5)) == Array("ping \(index)".utf8))
            flows.append(flow.takeDescriptor())
        }
        #expect(dialer.flowsHeld(towards: echo.endpoint) == 10)
        let ports = Set(echo.peers[.tcp, default: []].filter { $0.address == slice.address }.map(\.port))
        #expect(ports.count == 10 && ports.allSatisfy { slice.ports.contains($0) })

        // Closing the clients closes their flows, and the dialer stops counting them.
        for descriptor in flows { close(descriptor) }
        try await waitUntil { dialer.flowsHeld(towards: echo.endpoint) == 0 }
        #expect(dialer.flowsHeld(towards: echo.endpoint) == 0)
        try await stop()
    }
}
