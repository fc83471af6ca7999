import AsyncHTTPClient
import ArgumentParser
import Foundation
import PortSliceAPI
import PortSliceCore

/// Milliseconds since 1970 as an ISO 8601 UTC time.
func isoTime(_ milliseconds: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
}

struct LeasesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leases", abstract: "List the leases held now (all of them with the admin token, a host's own with its token).")

    @OptionGroup var server: ServerOptions

    func run() async throws {
        let list = try await server.client().leaseList()
        print(renderTable(
            ["lease", "host", "address", "slice", "ports", "since", "expires"],
            list.leases.map { ["\($0.id)", $0.host, $0.address.description, "\($0.slice)", $0.ports.description, isoTime($0.start), isoTime($0.expires)] }))
        guard let prefixes = list.prefixLeases, !prefixes.isEmpty else { return }
        print("\nIPv6 prefixes:")
        print(renderTable(
            ["lease", "host", "prefix", "since", "expires"],
            prefixes.map { ["\($0.id)", $0.host, $0.prefix.description, isoTime($0.start), isoTime($0.expires)] }))
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "What the allocator and the local proxy are doing: slices per address and trait class, and which slice each recent flow left from.",
        discussion: """
            From the allocator (admin token): slices leased, free, quarantined and draining per \
            address and per trait class, with warnings for classes running out. From the proxy \
            (its status page on its admin listener, --admin-listen, loopback only): the slices it sends from now and \
            the recent flows with the egress address, port and slice each used. Either part is \
            left out, with a note, when it does not answer; the command fails only when neither does.
            """)

    @OptionGroup var server: ServerOptions

    @Option(help: ArgumentHelp("The proxy's admin listener, whose status page to read (PORTSLICE_PROXY; 127.0.0.1:1081 by default).", valueName: "host:port"))
    var proxy: String?

    func run() async throws {
        var failures: [String] = []
        do {
            try await printAllocatorStatus()
        } catch {
            failures.append("\(error)")
        }
        let proxy = proxy ?? ProcessInfo.processInfo.environment["PORTSLICE_PROXY"] ?? "127.0.0.1:1081"
        do {
            var request = HTTPClientRequest(url: "http://\(proxy)/status")
            request.method = .GET
            let response = try await AllocatorClient.httpClient().execute(request, timeout: .seconds(10))
            let body = String(buffer: try await response.body.collect(upTo: 4 * 1024 * 1024))
            guard response.status == .ok else { throw CommandFailure("the proxy at \(proxy) answered \(response.status.code): \(body)") }
            print("\nproxy at \(proxy)\n\(body)", terminator: "")
        } catch let failure as CommandFailure {
            failures.append(failure.description)
        } catch {
            failures.append("no proxy answers at \(proxy) (\(error)); give --proxy HOST:PORT")
        }
        if failures.count == 2 { throw CommandFailure(failures.joined(separator: "\n")) }
        for failure in failures { printToStandardError("note: \(failure)") }
    }

    private func printAllocatorStatus() async throws {
        let client = try server.client()
        let table = try await client.sliceTable()
        let byAddress = Dictionary(grouping: table.slices, by: \.address)
        let rows = byAddress.keys.sorted().map { address -> [String] in
            let slices = byAddress[address]!
            func count(_ state: SliceStatus) -> String { "\(slices.filter { $0.state == state }.count)" }
            let hosts = Set(slices.compactMap(\.host)).sorted().joined(separator: ",")
            return [address.description, "\(slices.count)", count(.leased), count(.free), count(.quarantined), count(.draining), hosts]
        }
        print("allocator at \(client.base)")
        print(renderTable(["address", "slices", "leased", "free", "quarantined", "draining", "hosts"], rows))
        print("\ntable version \(table.version)\n")
        let report = try await client.capacity()
        print(renderTable(
            ["trait class", "free", "leased", "quarantined", "draining"],
            report.classes.map { [$0.summary, "\($0.free)", "\($0.leased)", "\($0.quarantined)", "\($0.draining)"] }))
        for trait in report.classes {
            if let warning = trait.warning { print("warning: \(trait.summary): \(warning)") }
        }
    }
}

struct WhoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "who",
        abstract: "Who held an address and port (or an IPv6 address, any port) at a moment, from the assignment log (admin).",
        discussion: """
            Examples: portslice who 203.0.113.10 40123 --at 2026-11-27T14:02:00Z
                      portslice who 2001:db8:10:5::1234 --at 2026-11-27T14:02:00Z
            """
    )

    @OptionGroup var server: ServerOptions

    @Argument(help: ArgumentHelp("The shared IPv4 address, or an address in a leased IPv6 prefix.", valueName: "ip"))
    var address: String

    @Argument(help: ArgumentHelp("The port (IPv4 only: an IPv6 prefix is held whole).", valueName: "port"))
    var port: UInt16?

    func validate() throws {
        let ipv6 = address.contains(":")
        if ipv6 && port != nil { throw ValidationError("an IPv6 prefix is held whole, every port: give the address without a port") }
        if !ipv6 && port == nil { throw ValidationError("give the port too: an IPv4 address is shared, each host holding a slice of its ports") }
    }

    @Option(help: ArgumentHelp("The moment: ISO 8601 (2026-11-27T14:02:00Z), milliseconds since 1970, or 'now'.", valueName: "time"))
    var at = "now"

    func run() async throws {
        let address = try IPAddress(parsing: address)
        let moment: Int64
        if at == "now" {
            moment = Int64(Date().timeIntervalSince1970 * 1000)
        } else if let milliseconds = Int64(at) {
            moment = milliseconds
        } else if let date = ISO8601DateFormatter().date(from: at) {
            moment = Int64(date.timeIntervalSince1970 * 1000)
        } else {
            throw ValidationError("--at '\(at)' must be ISO 8601 (2026-11-27T14:02:00Z), milliseconds since 1970, or 'now'.")
        }
        switch (address, port) {
        case (.v4(let address), let port?): try await printSliceHolders(of: address, port: port, at: moment)
        case (.v6(let address), _): try await printPrefixHolders(of: address, at: moment)
        case (.v4, nil): break  // refused by validate()
        }
    }

    private func printSliceHolders(of address: IPv4Address, port: UInt16, at moment: Int64) async throws {
        let records = try await server.client().who(address: address, port: port, at: Moment(milliseconds: moment))
        if records.isEmpty {
            print("nobody held \(address) port \(port) at \(isoTime(moment))")
            return
        }
        print(renderTable(
            ["host", "lease", "ports", "protocols", "from", "until"],
            records.map {
                [$0.host, "\($0.leaseID)", $0.ports.description, $0.protocols, isoTime($0.start.milliseconds), $0.end.map { isoTime($0.milliseconds) } ?? "now"]
            }))
    }

    private func printPrefixHolders(of address: IPv6Address, at moment: Int64) async throws {
        let records = try await server.client().who(address: address, at: Moment(milliseconds: moment))
        if records.isEmpty {
            print("nobody held \(address) at \(isoTime(moment))")
            return
        }
        print(renderTable(
            ["host", "lease", "prefix", "from", "until"],
            records.map { [$0.host, "\($0.leaseID)", $0.prefix.description, isoTime($0.start.milliseconds), $0.end.map { isoTime($0.milliseconds) } ?? "now"] }))
    }
}
