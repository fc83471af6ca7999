/// An address of either family, as a client address may be.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses IPv4 dotted decimal or IPv6 text, strictly.
    public init(parsing text: String) throws(AddressParseError) {
        if text.contains(":") {
            do { self = .v6(try IPv6Address(parsing: text)) } catch { throw error.renamed("address") }
        } else {
            do { self = .v4(try IPv4Address(parsing: text)) } catch { throw error.renamed("address") }
        }
    }

    public init?(_ description: String) {
        guard let parsed = try? IPAddress(parsing: description) else { return nil }
        self = parsed
    }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }
}

/// A prefix of either family, as a geofeed line carries.
public enum IPPrefix: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    case v4(IPv4Prefix)
    case v6(IPv6Prefix)

    public init(parsing text: String) throws(AddressParseError) {
        var copy = text
        let result = copy.withUTF8 { IPPrefix.parse($0) }
        switch result {
        case .success(let prefix): self = prefix
        case .failure(let reason): throw AddressParseError(what: "prefix", text: text, reason: reason)
        }
    }

    public init?(_ description: String) {
        guard let parsed = try? IPPrefix(parsing: description) else { return nil }
        self = parsed
    }

    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<IPPrefix, AddressParseError.Reason> {
        if bytes.contains(UInt8(ascii: ":")) {
            return IPv6Prefix.parse(bytes).map(IPPrefix.v6)
        }
        return IPv4Prefix.parse(bytes).map(IPPrefix.v4)
    }

    public var description: String {
        switch self {
        case .v4(let prefix): prefix.description
        case .v6(let prefix): prefix.description
        }
    }

    /// The number of leading bits that make the prefix.
    public var length: UInt8 {
        switch self {
        case .v4(let prefix): prefix.length
        case .v6(let prefix): prefix.length
        }
    }

    /// True when `address` is of this prefix's family and inside it. An IPv4-mapped IPv6
    /// address is an IPv6 address here: only an IPv6 prefix can contain it.
    public func contains(_ address: IPAddress) -> Bool {
        switch (self, address) {
        case (.v4(let prefix), .v4(let address)): prefix.contains(address)
        case (.v6(let prefix), .v6(let address)): prefix.contains(address)
        case (.v4, .v6), (.v6, .v4): false
        }
    }

    /// IPv4 prefixes sort before IPv6 ones; within a family by network, then length.
    public static func < (lhs: IPPrefix, rhs: IPPrefix) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let a), .v4(let b)): a < b
        case (.v6(let a), .v6(let b)): a < b
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}

extension AddressParseError {
    func renamed(_ what: String) -> AddressParseError {
        AddressParseError(what: what, text: text, reason: reason)
    }
}
