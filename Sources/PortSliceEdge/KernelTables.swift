import Foundation
import PortSliceCore

/// One nftables table that portslice owns, applied through `nft -f` so each change is a single
/// transaction: when nft refuses the script, the kernel keeps the rules it had.
public struct OwnedTable: Sendable {
    public let name: String
    /// `ip`, or `ip6`.
    public let family: String
    /// The network namespace (`ip netns` name) the table lives in; nil for this process's own.
    public let namespace: String?

    public init(name: String, family: String = "ip", namespace: String? = nil) {
        self.name = name
        self.family = family
        self.namespace = namespace
    }

    /// Applies a script that replaces the table whole.
    /// - Throws: `EdgeError` with nft's own words; the previous rules are then still in force.
    public func apply(_ script: String) throws(EdgeError) {
        do {
            _ = try SystemTool.run("nft", ["-f", "-"], input: script, in: namespace)
        } catch let failure as SystemTool.Failure {
            throw EdgeError("nft refused the new rules for table \(name), so the previous rules stay in force: \(failure.message)")
        } catch {
            throw EdgeError("cannot run nft: \(error)")
        }
    }

    /// The table as nftables lists it now, or nil when there is none.
    public func listing() throws(EdgeError) -> String? {
        do {
            return try SystemTool.run("nft", ["list", "table", family, name], in: namespace)
        } catch let failure as SystemTool.Failure where failure.message.hasPrefix("Error:") && failure.message.contains("No such file or directory") {
            // nft's own words for a missing table ("Error: No such file or directory", or
            // "Error: Could not process rule: ..." from older releases); `ip netns exec` failing
            // to enter the namespace also says "No such file or directory", without nft's
            // "Error:" first, and that is an error.
            return nil
        } catch {
            throw EdgeError("cannot list nftables table \(name): \(error)")
        }
    }

    /// Removes the table if it is there; nothing else is touched.
    public func remove() throws(EdgeError) {
        guard try listing() != nil else { return }
        try apply(NFTablesScript.removal(of: name, family: family))
    }

    /// The named counters of the table now.
    public func counters() throws(EdgeError) -> CounterValues {
        guard let listing = try listing() else { return [:] }
        return Self.counters(inListing: listing)
    }

    /// Reads `counter NAME { packets P bytes B }` blocks, however nft breaks them into lines.
    static func counters(inListing listing: String) -> CounterValues {
        let words = listing.split(whereSeparator: { $0.isWhitespace || $0 == "{" || $0 == "}" }).map(String.init)
        var values: CounterValues = [:]
        var index = 0
        while index + 5 < words.count {
            if words[index] == "counter", words[index + 2] == "packets", words[index + 4] == "bytes",
               let packets = UInt64(words[index + 3]), let bytes = UInt64(words[index + 5]) {
                values[words[index + 1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))] = (packets, bytes)
                index += 6
            } else {
                index += 1
            }
        }
        return values
    }

    /// A listing with counter values blanked, to tell whether someone else changed the rules.
    static func shape(ofListing listing: String) -> String {
        listing.replacing(/packets \d+ bytes \d+/, with: "packets - bytes -")
    }
}

/// The edge's policy routing: `ip rule fwmark MARK lookup TABLE` and a default route in TABLE
/// via the host's next hop, one table per host. These do not change with the slice table.
public struct PolicyRoutes: Sendable {
    public let hosts: [EdgeHost]
    public let namespace: String?

    public init(hosts: [EdgeHost], namespace: String? = nil) {
        self.hosts = hosts
        self.namespace = namespace
    }

    /// Installs the rules and routes, replacing any left by an earlier run.
    public func install() throws(EdgeError) {
        removeQuietly()
        let commands = hosts.flatMap { host in [
            "route replace default via \(host.nextHop) table \(host.routeTable)",
            "rule add fwmark \(hex(host.mark)) lookup \(host.routeTable) priority \(host.rulePriority)",
        ] }
        do {
            _ = try SystemTool.run("ip", ["-batch", "-"], input: commands.joined(separator: "\n") + "\n", in: namespace)
        } catch let failure as SystemTool.Failure {
            removeQuietly()
            throw EdgeError("cannot install policy routes to the hosts (is every next hop on a connected network?): \(failure.message)")
        } catch {
            throw EdgeError("cannot run ip: \(error)")
        }
    }

    /// True when every host's rule and route are in place as installed.
    public func areInPlace() throws(EdgeError) -> Bool {
        do {
            let rules = try SystemTool.run("ip", ["-o", "rule", "show"], in: namespace)
            for host in hosts {
                guard rules.contains("fwmark \(hex(host.mark)) lookup \(host.routeTable)") else { return false }
                let route = try SystemTool.run("ip", ["route", "show", "table", "\(host.routeTable)"], in: namespace)
                guard route.contains("default via \(host.nextHop) ") else { return false }
            }
            return true
        } catch {
            throw EdgeError("cannot read policy routes: \(error)")
        }
    }

    /// Removes only this edge's rules and tables; errors for ones already gone are ignored.
    public func removeQuietly() {
        let commands = hosts.flatMap { host in [
            "rule del priority \(host.rulePriority)",
            "route flush table \(host.routeTable)",
        ] }
        _ = try? SystemTool.run("ip", ["-force", "-batch", "-"], input: commands.joined(separator: "\n") + "\n", in: namespace)
    }
}

/// The edge's IPv6 routing: one route per prefix of the slice table (`PrefixRoute`) in a table
/// of the edge's own, looked up by one `ip -6 rule` ahead of the main table. A prefix the table
/// does not list falls through to the main table. Routes follow each slice table; the rule
/// stays.
public struct PrefixRoutes: Sendable {
    public static let table = SteeringMark.routeTableBase
    public static let rulePriority = SteeringMark.rulePriorityBase
    public let namespace: String?

    public init(namespace: String? = nil) {
        self.namespace = namespace
    }

    /// Installs the rule, replacing any left by an earlier run, with an empty table.
    public func installRule() throws(EdgeError) {
        removeQuietly()
        try run(["rule add lookup \(Self.table) priority \(Self.rulePriority)"], what: "install the IPv6 rule for prefix routes")
    }

    /// Makes the table hold exactly `routes`: each replaced in place (a prefix moving to another
    /// host changes in one step), then those no longer listed deleted.
    public func sync(_ routes: [PrefixRoute]) throws(EdgeError) {
        let wanted = Set(routes.map(\.prefix))
        let stale = try installed().keys.filter { !wanted.contains($0) }.sorted()
        try run(routes.map(\.command) + stale.map { "route del \($0) table \(Self.table)" }, what: "route the IPv6 prefixes to their hosts")
    }

    /// True when the rule is in place and the table holds exactly `routes`.
    public func areInPlace(_ routes: [PrefixRoute]) throws(EdgeError) -> Bool {
        let rules: String
        do { rules = try SystemTool.run("ip", ["-6", "-o", "rule", "show"], in: namespace) } catch { throw EdgeError("cannot read the IPv6 rules: \(error)") }
        guard rules.split(separator: "\n").contains(where: { $0.hasPrefix("\(Self.rulePriority):") && $0.contains("lookup \(Self.table)") }) else { return false }
        return try installed() == Dictionary(uniqueKeysWithValues: routes.map { ($0.prefix, $0.nextHop) })
    }

    /// The routes in the table now: prefix and next hop (nil for a blackhole).
    public func installed() throws(EdgeError) -> [IPv6Prefix: IPv6Address?] {
        let listing: String
        do { listing = try SystemTool.run("ip", ["-6", "route", "show", "table", "\(Self.table)"], in: namespace) } catch { throw EdgeError("cannot read the IPv6 prefix routes: \(error)") }
        return Self.routes(inListing: listing)
    }

    /// Reads `PREFIX via ADDRESS dev ...` and `blackhole PREFIX dev lo ...` lines.
    static func routes(inListing listing: String) -> [IPv6Prefix: IPv6Address?] {
        var routes: [IPv6Prefix: IPv6Address?] = [:]
        for line in listing.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            let blackhole = words.first == "blackhole"
            guard let first = words.dropFirst(blackhole ? 1 : 0).first, let prefix = IPv6Prefix(first.contains("/") ? first : first + "/128") else { continue }
            let via = words.firstIndex(of: "via").flatMap { words.indices.contains($0 + 1) ? IPv6Address(words[$0 + 1]) : nil }
            routes[prefix] = blackhole ? .some(nil) : via
        }
        return routes
    }

    /// Removes the rule and the table; errors for ones already gone are ignored.
    public func removeQuietly() {
        _ = try? SystemTool.run("ip", ["-6", "-force", "-batch", "-"], input: "rule del priority \(Self.rulePriority)\nroute flush table \(Self.table)\n", in: namespace)
    }

    private func run(_ commands: [String], what: String) throws(EdgeError) {
        guard !commands.isEmpty else { return }
        do {
            _ = try SystemTool.run("ip", ["-6", "-batch", "-"], input: commands.joined(separator: "\n") + "\n", in: namespace)
        } catch let failure as SystemTool.Failure {
            throw EdgeError("cannot \(what) (is every IPv6 next hop on a connected network?): \(failure.message)")
        } catch {
            throw EdgeError("cannot run ip: \(error)")
        }
    }
}
