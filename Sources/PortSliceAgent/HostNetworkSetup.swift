import PortSliceCore
import PortSliceEdge
import PortSliceSockets

/// What the agent changes on the host (root only): each shared address on loopback while a
/// slice of it is held, a `local` route on loopback for each IPv6 prefix held (so the proxy,
/// binding with IPV6_FREEBIND, sends from and receives on every address of it without adding
/// them one by one), and the host guard (`HostGuardRuleset`) built from the host's own leases,
/// so packets leave only from ports the host holds now.
public actor HostNetworkSetup {
    /// Keeps the guard's nftables table, once the host's name is known from its first lease.
    private var guardController: EdgeController?
    private let namespace: String?
    /// Addresses this agent added to `lo` (and so may remove).
    private var added: Set<IPv4Address> = []
    /// Prefixes this agent routed to `lo` (and so may unroute).
    private var routed: Set<IPv6Prefix> = []
    /// Every slice held since start, so the guard keeps dropping what leaves from a slice
    /// after it is lost (a socket bound to an address outlives the address).
    private var everHeld: [SliceID: EgressSlice] = [:]
    private var version: Int64 = 0

    /// - Parameter namespace: the network namespace (`ip netns` name) to change; nil for this
    ///   process's own.
    public init(namespace: String? = nil) {
        self.namespace = namespace
    }

    /// Brings the host in line with `held` and `prefixes`: addresses of held slices and routes
    /// of held prefixes present, the guard allowing exactly the held slices' ports, addresses
    /// and routes no longer held removed (the agent has taken them from the proxy already).
    public func apply(_ held: [HeldSlice], prefixes: [IPv6Prefix] = []) async throws {
        let addresses = Set(held.map(\.slice.address))
        for address in addresses.subtracting(added).sorted() where !Self.isLoopbackNet(address) {
            try addAddress(address)
        }
        for prefix in Set(prefixes).subtracting(routed).sorted() { try addRoute(prefix) }
        if guardController == nil, let host = held.first?.host {
            guardController = EdgeController(role: .hostGuard(host: host), namespace: namespace)
        }
        if let guardController {
            for slice in held { everHeld[SliceID(address: slice.slice.address, index: slice.index)] = slice.slice }
            version += 1
            let owned = Set(held.map { SliceID(address: $0.slice.address, index: $0.index) })
            let host = held.first?.host
            // Slices held before and not now stay as free entries: their ports are dropped.
            let table = SliceTable(version: version, slices: everHeld.sorted { $0.key < $1.key }.map { id, slice in
                owned.contains(id)
                    ? SliceTable.Entry(address: id.address, index: id.index, ports: slice.ports, state: .leased, host: host)
                    : SliceTable.Entry(address: id.address, index: id.index, ports: slice.ports, state: .free, host: nil)
            })
            try await guardController.apply(table)
        }
        for address in added.subtracting(addresses).sorted() { try removeAddress(address) }
        for prefix in routed.subtracting(prefixes).sorted() { try removeRoute(prefix) }
    }

    /// Removes the addresses and routes this agent added and the guard's table.
    public func remove() async throws {
        for address in added.sorted() { try removeAddress(address) }
        for prefix in routed.sorted() { try removeRoute(prefix) }
        try await guardController?.shutdown()
    }

    /// 127.0.0.0/8 is local already through `lo`'s own route.
    static func isLoopbackNet(_ address: IPv4Address) -> Bool { address.octets.0 == 127 }

    private func addAddress(_ address: IPv4Address) throws {
        do {
            _ = try SystemTool.run("ip", ["-4", "address", "add", "\(address)/32", "dev", "lo"], in: namespace)
            added.insert(address)
        } catch let failure as SystemTool.Failure where failure.message.contains("File exists") || failure.message.contains("already assigned") {
            // Configured by someone else: theirs to remove. (iproute2 words this "File exists"
            // or, in newer releases, "Address already assigned".)
            return
        } catch {
            throw AgentError("cannot add \(address)/32 to lo: \(error)")
        }
    }

    private func removeAddress(_ address: IPv4Address) throws {
        do {
            _ = try SystemTool.run("ip", ["-4", "address", "del", "\(address)/32", "dev", "lo"], in: namespace)
        } catch let failure as SystemTool.Failure where failure.message.contains("Cannot assign") {
            // Gone already.
        } catch {
            throw AgentError("cannot remove \(address)/32 from lo: \(error)")
        }
        added.remove(address)
    }

    private func addRoute(_ prefix: IPv6Prefix) throws {
        do {
            _ = try SystemTool.run("ip", ["-6", "route", "add", "local", "\(prefix)", "dev", "lo"], in: namespace)
            routed.insert(prefix)
        } catch let failure as SystemTool.Failure where failure.message.contains("File exists") {
            // Unlike an address, the route is for a prefix leased to this host, so it is ours
            // to remove when the lease goes: most likely a run that died left it.
            routed.insert(prefix)
        } catch {
            throw AgentError("cannot route \(prefix) to lo (ip -6 route add local \(prefix) dev lo): \(error)")
        }
    }

    private func removeRoute(_ prefix: IPv6Prefix) throws {
        do {
            _ = try SystemTool.run("ip", ["-6", "route", "del", "local", "\(prefix)", "dev", "lo", "table", "local"], in: namespace)
        } catch let failure as SystemTool.Failure where failure.message.contains("No such process") {
            // Gone already.
        } catch {
            throw AgentError("cannot remove the local route of \(prefix) from lo: \(error)")
        }
        routed.remove(prefix)
    }
}
