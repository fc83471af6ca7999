import PortSliceCore

/// Named nftables counters and their values, carried from the rules in force into their
/// replacement so a table change does not reset them.
public typealias CounterValues = [String: (packets: UInt64, bytes: UInt64)]

/// One nftables table written as a script that `nft -f` applies in a single transaction: the
/// table is created if missing, deleted, and declared whole, so the kernel holds either the old
/// table or the new one, never a mix.
struct NFTablesScript {
    let table: String
    private(set) var lines: [String] = []

    /// - Parameter family: `ip`, or `ip6` for the edge's IPv6 table.
    init(table: String, family: String = "ip", comment: String) {
        self.table = table
        lines = ["table \(family) \(table)", "delete table \(family) \(table)", "table \(family) \(table) {", "  comment \"\(comment)\""]
    }

    mutating func counter(_ name: String, carrying values: CounterValues) {
        if let value = values[name] {
            lines.append("  counter \(name) { packets \(value.packets) bytes \(value.bytes) }")
        } else {
            lines.append("  counter \(name) { }")
        }
    }

    /// A set or map; `elements` may be empty (nftables refuses an empty element list).
    mutating func collection(_ kind: String, _ name: String, _ declaration: String, elements: [String]) {
        lines.append("  \(kind) \(name) {")
        lines.append("    \(declaration)")
        if !elements.isEmpty {
            lines.append("    elements = {")
            lines.append(elements.map { "      \($0)" }.joined(separator: ",\n"))
            lines.append("    }")
        }
        lines.append("  }")
    }

    /// A chain; `hook` is nil for a regular chain that is only jumped to.
    mutating func chain(_ name: String, _ hook: String?, rules: [String]) {
        lines.append("  chain \(name) {")
        if let hook { lines.append("    \(hook)") }
        lines += rules.map { "    \($0)" }
        lines.append("  }")
    }

    var text: String { (lines + ["}"]).joined(separator: "\n") + "\n" }

    /// The command that removes the table, for shutdown.
    static func removal(of table: String, family: String = "ip") -> String { "table \(family) \(table)\ndelete table \(family) \(table)\n" }
}

extension PortRange {
    /// `lower-upper`, or one port alone, as nftables writes elements.
    var nftables: String { lower == upper ? "\(lower)" : "\(lower)-\(upper)" }
}

/// ICMP messages that quote the packet they answer, so they belong to that packet's owner.
let quotingICMPTypes = "{ destination-unreachable, time-exceeded, parameter-problem }"
/// The source port of the packet quoted in an ICMP error: 8 bytes of ICMP header and a 20-byte
/// inner IPv4 header put it 224 bits into the transport payload.
let quotedSourcePort = "@th,224,16"
/// Only inner headers without IP options (version 4, header length 5) have their ports there.
let quotedHeaderWithoutOptions = "@th,64,8 0x45"
