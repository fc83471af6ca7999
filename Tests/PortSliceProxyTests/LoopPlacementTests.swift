import Testing
@testable import PortSliceProxy

/// Which CPU each proxy loop is kept on: the CPUs the starting thread may use, in order.
@Suite("proxy loop placement")
struct LoopPlacementTests {
    @Test("loop i on the i-th allowed CPU, round the list again when loops outnumber CPUs; none pinned when there are fewer loops (a CPU quota) or no CPUs")
    func placement() {
        #expect(ProxyServer.placement(loops: 2, cpus: [0, 1]) == [0, 1])
        #expect(ProxyServer.placement(loops: 2, cpus: [0, 1, 2, 3]) == nil)
        #expect(ProxyServer.placement(loops: 3, cpus: [2, 5]) == [2, 5, 2])
        #expect(ProxyServer.placement(loops: 1, cpus: [7]) == [7])
        #expect(ProxyServer.placement(loops: 2, cpus: []) == nil)
    }
}
