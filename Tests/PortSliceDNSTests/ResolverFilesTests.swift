import PortSliceCore
import Testing
@testable import PortSliceDNS

@Suite("resolv.conf and hosts")
struct ResolverFilesTests {
    @Test func readsResolvConfAsGlibcDoes() throws {
        let text = """
            # generated
            ; also a comment
            nameserver 192.0.2.53
            nameserver\t2001:db8::53   # trailing comment
            nameserver bogus
            nameserver 192.0.2.54
            nameserver 192.0.2.55
            domain corp.example
            search a.example  b.example
            options ndots:3 timeout:60 attempts:9 rotate edns0
            sortlist 130.155.160.0/255.255.240.0
            """
        let configuration = ResolverConfiguration(parsing: text)
        #expect(configuration.nameservers == [
            .v4(IPv4Address(192, 0, 2, 53)), .v6(try IPv6Address(parsing: "2001:db8::53")), .v4(IPv4Address(192, 0, 2, 54)),
        ])
        #expect(configuration.searchDomains.map(\.description) == ["a.example", "b.example"])
        #expect(configuration.ndots == 3)
        #expect(configuration.timeoutSeconds == 30)
        #expect(configuration.attempts == 5)
    }

    @Test func defaultsAsGlibc() {
        let empty = ResolverConfiguration(parsing: "")
        #expect(empty == ResolverConfiguration())
        #expect(empty.nameservers == [.v4(IPv4Address(127, 0, 0, 1))])
        #expect(empty.searchDomains.isEmpty)
        #expect((empty.ndots, empty.timeoutSeconds, empty.attempts) == (1, 5, 2))
        let fromHostname = ResolverConfiguration(parsing: "options ndots:20 timeout:x attempts:0\n", hostname: "box.lab.example")
        #expect(fromHostname.searchDomains.map(\.description) == ["lab.example"])
        #expect((fromHostname.ndots, fromHostname.timeoutSeconds, fromHostname.attempts) == (15, 5, 0))
        #expect(ResolverConfiguration(parsing: "", hostname: "box").searchDomains.isEmpty)
    }

    @Test func theLastSearchOrDomainLineWins() {
        #expect(ResolverConfiguration(parsing: "search x.example y.example\ndomain z.example extra\n").searchDomains.map(\.description) == ["z.example"])
        #expect(ResolverConfiguration(parsing: "domain z.example\nsearch x.example\n", hostname: "h.other").searchDomains.map(\.description) == ["x.example"])
        #expect(ResolverConfiguration(parsing: "search\n", hostname: "h.other").searchDomains.isEmpty)
    }

    @Test func expandsNamesInResSearchOrder() throws {
        var configuration = ResolverConfiguration(parsing: "search a.example b.example\n")
        func candidates(_ name: String) throws -> [String] { try configuration.candidates(for: name).map(\.description) }
        #expect(try candidates("www") == ["www.a.example", "www.b.example", "www"])
        #expect(try candidates("www.example.com") == ["www.example.com", "www.example.com.a.example", "www.example.com.b.example"])
        #expect(try candidates("www.example.com.") == ["www.example.com"])
        configuration.ndots = 3
        #expect(try candidates("www.example.com") == ["www.example.com.a.example", "www.example.com.b.example", "www.example.com"])
        configuration.ndots = 0
        #expect(try candidates("www") == ["www", "www.a.example", "www.b.example"])
        configuration.searchDomains = [try DNSName(parsing: String(repeating: "d", count: 63) + "." + String(repeating: "e", count: 63))]
        let long = Array(repeating: String(repeating: "a", count: 63), count: 2).joined(separator: ".")
        #expect(try candidates(long) == [long])
        #expect(throws: DNSNameError.emptyLabel) { try configuration.candidates(for: "a..b") }
    }

    @Test func readsHostsFiles() throws {
        let hosts = HostsFile(parsing: """
            127.0.0.1\tlocalhost
            ::1 localhost ip6-localhost
            192.0.2.10 Web.Example web   # the web server
            192.0.2.11 web.example
            192.0.2.10 web.example
            fe80::1%eth0 linklocal
            # 192.0.2.99 web.example
            2001:db8::10 web.example
            192.0.2.12
            not-an-address web.example
            192.0.2.13 Ünïcode.example
            """)
        let web = try #require(hosts.addresses(for: "WEB.example."))
        #expect(web.ipv4 == [IPv4Address(192, 0, 2, 10), IPv4Address(192, 0, 2, 11)])
        #expect(web.ipv6 == [try IPv6Address(parsing: "2001:db8::10")])
        #expect(hosts.addresses(for: "web") == HostsFile.Addresses(ipv4: [IPv4Address(192, 0, 2, 10)]))
        #expect(hosts.addresses(for: "localhost") == HostsFile.Addresses(ipv4: [IPv4Address(127, 0, 0, 1)], ipv6: [try IPv6Address(parsing: "::1")]))
        #expect(hosts.addresses(for: "ip6-localhost")?.ipv4 == [])
        #expect(hosts.addresses(for: "linklocal") == nil)
        #expect(hosts.addresses(for: "example") == nil)
        // Lowercase ASCII is looked up as given; anything else through its lowercased form.
        #expect(hosts.addresses(for: "web.example")?.ipv4 == web.ipv4)
        #expect(hosts.addresses(for: "Ünïcode.example") == HostsFile.Addresses(ipv4: [IPv4Address(192, 0, 2, 13)]))
        #expect(hosts.addresses(for: "ünïcode.example.") == HostsFile.Addresses(ipv4: [IPv4Address(192, 0, 2, 13)]))
    }
}
