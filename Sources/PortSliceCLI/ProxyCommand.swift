import ArgumentParser
import Foundation
import Logging
import PortSliceCore
import PortSliceProxy

/// `portslice proxy`: the egress proxy, from slices given on the command line.
struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run the egress proxy: SOCKS5 and HTTP CONNECT on one port, each flow leaving from a slice whose address's traits mirror the client's.",
        discussion: """
            The client's traits come from the client geofeeds (longest prefix); the egress \
            address is the closest in traits among the slices' addresses (the same client keeps \
            its address), and the flow is opened from that address's slices through the data \
            plane's dialer; when they are out of ports for the destination, equally close \
            addresses are tried, then the client gets SOCKS reply 1 or HTTP 503.

            By default no destination inside the network is reached: every range of the IANA \
            IPv4 and IPv6 special-purpose registries (this network, private use, shared \
            address space, loopback, link-local, 192.0.0.0/24, the documentation and \
            benchmarking prefixes, AS112, AMT, 6to4 relays, reserved, limited broadcast; \
            unique local, IPv4-mapped, NAT64, ...), multicast, the egress addresses themselves \
            and every address on this host's interfaces (read again every second) are refused \
            (SOCKS reply 2, HTTP 403) unless --allow names them; --deny refuses more, checked \
            first. A name is judged by the address it resolves to, which is what is dialled. \
            Destination port 25 (SMTP) is refused too, as egress providers refuse it, unless \
            --allow-port 25 opens it; --deny-port refuses more ports or ranges LOW-HIGH and is \
            checked first, so no --allow-port opens a port it names (to allow only some ports, \
            deny the others). The port is judged before the address, and before a name is \
            looked up. Refusals are counted by reason in portslice_proxy_refusals_total. \
            Beyond loopback it listens only with --users (SOCKS username/password, RFC 1929; \
            HTTP Proxy-Authorization: Basic), a file of bcrypt hashes that `portslice users add` \
            writes. With --trust-proxy-protocol every connection must \
            start with a PROXY protocol v1 or v2 header, whose source is taken as the client: \
            for a load balancer or VPN concentrator in front, named by --proxy-protocol-from \
            (connections from anyone else are closed unread). The status page and /metrics are \
            on --admin-listen (127.0.0.1:1081), for requests whose Host is an IP address or \
            localhost. Whatever a client sends before its relay starts is held up to 64 KiB. \
            Stops gracefully on SIGTERM or SIGINT: it closes its listeners and connections.

            IPv6 is not cut into slices: with --prefix (a prefix routed to this host, such as \
            `ip -6 route add local 2001:db8:10:5::/64 dev lo`), each client leaves from an \
            address of its own in it, derived from the client's address with the secret in \
            --address-key, so it keeps it across connections and restarts. A name with \
            addresses of both families is tried over IPv6 first and over IPv4 250 ms later if \
            IPv6 has not connected (Happy Eyeballs, RFC 8305).

            Example:
              portslice proxy --slice 127.0.0.2:20000-20999 --pool pool.csv --clients clients.csv --allow 127.0.0.1/32
              curl --socks5-hostname 127.0.0.1:1080 http://127.0.0.1:8080/
            """
    )

    @Option(name: .customLong("slice"), help: ArgumentHelp("A slice this host may send from, ADDRESS:LOW-HIGH; repeat for several.", valueName: "slice"))
    var slices: [String] = []

    @Option(name: .customLong("prefix"),
            help: ArgumentHelp("An IPv6 prefix routed to this host to send from (each client from an address of its own in it); repeat for several.", valueName: "prefix"))
    var prefixes: [String] = []

    @Option(help: ArgumentHelp("Pool geofeed: the traits of the slices' addresses (and of the prefixes, on IPv6 lines containing them).", valueName: "file"))
    var pool: String

    @OptionGroup var proxy: ProxyOptions

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        if slices.isEmpty && prefixes.isEmpty {
            throw ValidationError("give at least one --slice ADDRESS:LOW-HIGH or --prefix IPV6-PREFIX to send from")
        }
    }

    /// The pool file's IPv4 lines (the slices' addresses) and IPv6 lines (the prefixes').
    func poolFile() throws -> (addresses: Geofeed, prefixes: [GeofeedEntry]) {
        let feed = try Geofeed.read(readFile(pool, what: "pool file"), source: pool)
        return (Geofeed(entries: feed.entries.filter { if case .v4 = $0.prefix { true } else { false } }),
                feed.entries.filter { if case .v6 = $0.prefix { true } else { false } })
    }

    /// The prefixes given, each with the traits of the pool file's IPv6 line (of `lines`) that holds it.
    func egressPrefixes(lines: [GeofeedEntry]) throws -> EgressPrefixes {
        return EgressPrefixes(try prefixes.map { text in
            let prefix: IPv6Prefix
            do { prefix = try IPv6Prefix(parsing: text) } catch { throw CommandFailure("--prefix '\(text)': \(error)") }
            let holding = lines.filter { line in
                if case .v6(let pooled) = line.prefix { pooled.length <= prefix.length && pooled.contains(prefix.network) } else { false }
            }
            guard let line = holding.max(by: { $0.prefix < $1.prefix }) else {
                throw CommandFailure("--prefix \(prefix) has no traits: add an IPv6 line holding it to the pool file \(pool), such as \(prefix),US,US-CA,Los Angeles,")
            }
            return (prefix, line.traits)
        })
    }

    /// The slices given, with their addresses' traits from the pool file's IPv4 lines.
    func egressSlices(addresses poolFeed: Geofeed) throws -> EgressSlices {
        let egressPool: EgressPool
        do { egressPool = try EgressPool(feed: poolFeed) } catch { throw CommandFailure("\(pool): \(error)") }
        let parsedSlices = try slices.map { text in
            do { return try EgressSlice(parsing: text) } catch { throw CommandFailure("--slice '\(text)': \(error)") }
        }
        do { return try EgressSlices(slices: parsedSlices, pool: egressPool) } catch { throw CommandFailure("\(error)") }
    }

    func run() async throws {
        let poolLines = try poolFile()
        let slices = try egressSlices(addresses: poolLines.addresses), prefixes = try egressPrefixes(lines: poolLines.prefixes)
        let logger = try logging.bootstrap("portslice.proxy")
        try await runDaemon([ProxyService(options: proxy, slices: slices, prefixes: prefixes, logger: logger)], logger: logger)
    }
}
