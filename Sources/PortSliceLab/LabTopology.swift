import Foundation
import PortSliceCore
import PortSliceEdge

/// The lab's network, in namespaces and documentation prefixes only:
///
///     host i (psl-hI) --192.0.2.(4i-3)/30-- edge (psl-edge) --198.51.100.0/25-- internet (psl-inet) --198.51.100.128/30, MTU 1280-- far (psl-far)
///
/// Every host carries the shared addresses (203.0.113.10 and up) on its loopback and routes
/// through the edge. The internet namespace runs the echo servers; the far namespace sits
/// behind a smaller link, so large packets towards it draw ICMP "fragmentation needed" from
/// the internet router, which must find its way back to the sending host.
///
/// IPv6 runs beside it, in 2001:db8::/32 only: host i's link is 2001:db8:ffff:i::/64 (the edge
/// ::1, the host ::2), the uplink 2001:db8:fffe::/64 (the edge ::1, the internet ::2), and the
/// internet routes the pool prefix 2001:db8:100::/48, out of which hosts lease /64s, to the
/// edge, which routes each leased /64 to its host.
public struct LabTopology: Sendable {
    public let hostCount: Int
    public let addressCount: Int

    public static let maximumHosts = 60
    public static let maximumAddresses = 50

    public init(hosts: Int, addresses: Int) throws(LabError) {
        guard (1...Self.maximumHosts).contains(hosts) else { throw LabError("--hosts \(hosts) is out of range; the lab has room for 1 to \(Self.maximumHosts)") }
        guard (1...Self.maximumAddresses).contains(addresses) else { throw LabError("--addresses \(addresses) is out of range; give 1 to \(Self.maximumAddresses)") }
        hostCount = hosts
        addressCount = addresses
    }

    public static let edge = "psl-edge"
    public static let internet = "psl-inet"
    public static let far = "psl-far"
    public static let namePrefix = "psl-"

    public var hostIndices: ClosedRange<Int> { 1...hostCount }
    public func namespace(ofHost index: Int) -> String { "psl-h\(index)" }
    public func hostName(_ index: Int) -> String { "h\(index)" }
    public var namespaces: [String] { [Self.edge, Self.internet, Self.far] + hostIndices.map(namespace(ofHost:)) }

    /// The edge's side of host `index`'s link: the host's next hop.
    public func edgeSide(ofHost index: Int) -> IPv4Address { IPv4Address(192, 0, 2, UInt8(4 * index - 3)) }
    public func hostSide(ofHost index: Int) -> IPv4Address { IPv4Address(192, 0, 2, UInt8(4 * index - 2)) }
    public var sharedAddresses: [IPv4Address] { (0..<addressCount).map { IPv4Address(203, 0, 113, UInt8(10 + $0)) } }

    public static let edgeUplink = IPv4Address(198, 51, 100, 1)
    public static let internetAddress = IPv4Address(198, 51, 100, 2)
    public static let internetToFar = IPv4Address(198, 51, 100, 129)
    public static let farAddress = IPv4Address(198, 51, 100, 130)
    public static let farLinkMTU = 1280

    /// The IPv6 pool prefix hosts lease /64s from.
    public static let prefixPool = IPv6Prefix("2001:db8:100::/48")!
    public static let edgeUplink6 = IPv6Address("2001:db8:fffe::1")!
    public static let internetAddress6 = IPv6Address("2001:db8:fffe::2")!
    /// The edge's side of host `index`'s IPv6 link: the host's IPv6 next hop.
    public func edgeSide6(ofHost index: Int) -> IPv6Address { IPv6Address("2001:db8:ffff:\(String(index, radix: 16))::1")! }
    public func hostSide6(ofHost index: Int) -> IPv6Address { IPv6Address("2001:db8:ffff:\(String(index, radix: 16))::2")! }

    /// `ip` and `sysctl` invocations that build the lab, in order: (namespace to run in, or
    /// nil for `ip` itself with `-n`, and the arguments).
    public var buildSteps: [[String]] {
        var steps = namespaces.map { ["ip", "netns", "add", $0] }
        steps += namespaces.map { ["ip", "-n", $0, "link", "set", "lo", "up"] }
        // Reverse-path filtering off before any link exists, so new links inherit it: hosts'
        // packets come from shared addresses that the edge routes only by mark.
        for router in [Self.edge, Self.internet] {
            steps.append(["ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                          "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv6.conf.all.forwarding=1"])
        }
        steps += [
            ["ip", "-n", Self.edge, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", Self.internet],
            ["ip", "-n", Self.edge, "address", "add", "\(Self.edgeUplink)/25", "dev", "uplink"],
            ["ip", "-n", Self.edge, "link", "set", "uplink", "up"],
            ["ip", "-n", Self.internet, "address", "add", "\(Self.internetAddress)/25", "dev", "eth0"],
            ["ip", "-n", Self.internet, "link", "set", "eth0", "up"],
            ["ip", "-n", Self.edge, "route", "add", "default", "via", "\(Self.internetAddress)"],
            ["ip", "-n", Self.internet, "route", "add", "203.0.113.0/24", "via", "\(Self.edgeUplink)"],
            // IPv6 addresses without duplicate address detection, so they serve at once.
            ["ip", "-n", Self.edge, "-6", "address", "add", "\(Self.edgeUplink6)/64", "dev", "uplink", "nodad"],
            ["ip", "-n", Self.internet, "-6", "address", "add", "\(Self.internetAddress6)/64", "dev", "eth0", "nodad"],
            ["ip", "-n", Self.edge, "-6", "route", "add", "default", "via", "\(Self.internetAddress6)"],
            ["ip", "-n", Self.internet, "-6", "route", "add", "\(Self.prefixPool)", "via", "\(Self.edgeUplink6)"],
            ["ip", "-n", Self.internet, "link", "add", "far", "mtu", "\(Self.farLinkMTU)", "type", "veth", "peer", "name", "eth0", "mtu", "\(Self.farLinkMTU)", "netns", Self.far],
            ["ip", "-n", Self.internet, "address", "add", "\(Self.internetToFar)/30", "dev", "far"],
            ["ip", "-n", Self.internet, "link", "set", "far", "up"],
            ["ip", "-n", Self.far, "address", "add", "\(Self.farAddress)/30", "dev", "eth0"],
            ["ip", "-n", Self.far, "link", "set", "eth0", "up"],
            ["ip", "-n", Self.far, "route", "add", "default", "via", "\(Self.internetToFar)"],
        ]
        for index in hostIndices {
            let host = namespace(ofHost: index)
            steps += [
                ["ip", "-n", Self.edge, "link", "add", "h\(index)", "type", "veth", "peer", "name", "eth0", "netns", host],
                ["ip", "-n", Self.edge, "address", "add", "\(edgeSide(ofHost: index))/30", "dev", "h\(index)"],
                ["ip", "-n", Self.edge, "link", "set", "h\(index)", "up"],
                ["ip", "-n", host, "address", "add", "\(hostSide(ofHost: index))/30", "dev", "eth0"],
                ["ip", "-n", host, "link", "set", "eth0", "up"],
                ["ip", "-n", host, "route", "add", "default", "via", "\(edgeSide(ofHost: index))"],
                ["ip", "-n", Self.edge, "-6", "address", "add", "\(edgeSide6(ofHost: index))/64", "dev", "h\(index)", "nodad"],
                ["ip", "-n", host, "-6", "address", "add", "\(hostSide6(ofHost: index))/64", "dev", "eth0", "nodad"],
                ["ip", "-n", host, "-6", "route", "add", "default", "via", "\(edgeSide6(ofHost: index))"],
                // Slices start at 1024; inside this range the dialer's kernel fast path applies.
                ["ip", "netns", "exec", host, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"],
            ]
            steps += sharedAddresses.map { ["ip", "-n", host, "address", "add", "\($0)/32", "dev", "lo"] }
        }
        return steps
    }

    /// Builds the lab. A failure removes whatever was built, so nothing is left half made.
    /// - Throws: `LabError` when a lab namespace already exists (run `lab down`) or a step fails.
    public func build() throws(LabError) {
        let existing = Self.existingNamespaces()
        guard existing.isEmpty else {
            throw LabError("lab namespaces already exist (\(existing.joined(separator: ", "))); run `portslice lab down` first")
        }
        for step in buildSteps {
            do {
                _ = try SystemTool.run(step[0], Array(step.dropFirst()))
            } catch {
                Self.tearDown()
                throw LabError("building the lab failed at `\(step.joined(separator: " "))`: \(error); nothing was left behind")
            }
        }
    }

    /// Namespaces of a lab (any size) that exist now.
    public static func existingNamespaces() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        return names.filter { $0.hasPrefix(namePrefix) }.sorted()
    }

    /// Deletes every lab namespace (their links go with them) and returns what is still there
    /// afterwards, which should be nothing.
    @discardableResult
    public static func tearDown() -> [String] {
        for name in existingNamespaces() {
            _ = try? SystemTool.run("ip", ["netns", "delete", name])
        }
        return existingNamespaces()
    }
}

/// A lab step that failed, worded for the operator.
public struct LabError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
