import Foundation
import Testing

/// `portslice edge render` with IPv6 next hops: needs no root, changes nothing.
@Suite("portslice edge with IPv6 next hops")
struct EdgeCommandTests {
    static let table = """
        {"version": 5, "slices": [{"address": "203.0.113.10", "index": 0, "ports": "1024-2047", "state": "leased", "host": "h1"}],
         "prefixes": [{"prefix": "2001:db8:100:1::/64", "state": "leased", "host": "h1"},
                      {"prefix": "2001:db8:100:2::/64", "state": "leased", "host": "h2"}]}
        """

    @Test("--host NAME=IPV4,IPV6 routes the host's prefix; a host without an IPv6 next hop is named with the fix")
    func rendersPrefixRoutes() async throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("table.json", Self.table)
        let result = try await CommandRunner.run(["edge", "render", "--table", file, "--host", "h1=192.0.2.2,2001:db8:ffff:1::2", "--host", "h2=192.0.2.6"])
        #expect(result.status == 0, "\(result.errorOutput)")
        #expect(result.output.contains("table ip6 portslice_edge6 {"))
        let routes = result.output.split(separator: "\n").filter { $0.hasPrefix("# ip -6 ") }
        #expect(routes == ["# ip -6 route replace 2001:db8:100:1::/64 via 2001:db8:ffff:1::2 table 53000",
                           "# ip -6 route replace blackhole 2001:db8:100:2::/64 table 53000"])
        #expect(result.errorOutput.contains(
            "warning: host h2 leases IPv6 prefix(es) 2001:db8:100:2::/64 but has no IPv6 next hop here (give its IPv6 next hop as --host h2=IPV4,IPV6); they are dropped"),
            "\(result.errorOutput)")
    }

    @Test("a --host whose next hops are not IPV4[,IPV6] is refused, naming it", arguments: [
        ("h1=192.0.2.2,nope", "'nope' is not an IPv6 next hop"),
        ("h1=2001:db8::2", "is not NAME=IPV4 or NAME=IPV4,IPV6"),
        ("h1=192.0.2.2,2001:db8::2,2001:db8::3", "is not NAME=IPV4 or NAME=IPV4,IPV6"),
    ])
    func refusesBadHost(host: String, message: String) async throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("table.json", Self.table)
        let result = try await CommandRunner.run(["edge", "render", "--table", file, "--host", host])
        #expect(result.status != 0)
        #expect(result.errorOutput.contains(message) && result.errorOutput.contains(host), "\(result.errorOutput)")
    }
}
