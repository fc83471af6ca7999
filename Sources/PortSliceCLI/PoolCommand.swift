import ArgumentParser
import PortSliceAPI
import PortSliceCore

/// `portslice pool`: the egress addresses the allocator slices.
struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Add, drain and remove egress addresses and IPv6 prefixes (admin).",
        subcommands: [PoolImportCommand.self, PoolDrainCommand.self, PoolRemoveCommand.self]
    )
}

struct PoolImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Add the addresses and IPv6 prefixes of a pool geofeed (with trait columns); those already present are kept.",
        discussion: "Example: portslice pool import pool.csv --slice-size 2048 --prefix-length 64"
    )

    @OptionGroup var server: ServerOptions

    @Argument(help: ArgumentHelp("Pool geofeed: prefix,country,region,city,postal,category,reputation,tags.", valueName: "file"))
    var file: String

    @Option(help: "Ports per slice.")
    var sliceSize = 2048

    @Option(help: ArgumentHelp("Ports to slice, LOW-HIGH.", valueName: "range"), transform: { try PortRange(parsing: $0) })
    var range = PortRange.nonSystemPorts

    @Option(help: ArgumentHelp("Length of the prefixes hosts lease out of the file's IPv6 prefixes, at most 64.", valueName: "bits"))
    var prefixLength = PoolPrefix.defaultLeaseLength

    func validate() throws {
        // Checked even when the file has no IPv6 line, so a wrong value is never taken silently.
        if let refusal = PoolPrefix.refusal(ofLeaseLength: prefixLength, as: "--prefix-length") { throw ValidationError(refusal) }
    }

    func run() async throws {
        let feed = try Geofeed.read(readFile(file, what: "pool file"), source: file)
        let pool: EgressPool, prefixes: [PoolPrefix]
        do {
            let split = try feed.splitPool(leaseLength: prefixLength)
            pool = try EgressPool(feed: split.addresses)
            prefixes = split.prefixes
        } catch {
            throw CommandFailure("\(file): \(error)")
        }
        let client = try server.client()
        /// Adds one entry; false when the allocator already has it.
        func added(_ add: () async throws -> Void) async throws -> Bool {
            do {
                try await add()
                return true
            } catch let failure as APIFailure where failure.status == 409 {
                return false
            }
        }
        var addresses = 0, blocks = 0
        for egress in pool.addresses where try await added({
            try await client.addAddress(NewAddress(address: egress.address, traits: egress.traits, range: range, sliceSize: sliceSize))
        }) { addresses += 1 }
        for prefix in prefixes where try await added({
            try await client.addPrefix(NewPrefix(prefix: prefix.prefix, traits: prefix.traits, leaseLength: prefix.leaseLength))
        }) { blocks += 1 }
        print("\(file): \(addresses) address(es) added, \(pool.addresses.count - addresses) already in the pool; "
            + "\(blocks) IPv6 prefix(es) added, \(prefixes.count - blocks) already in the pool")
    }
}

/// The allocator and one address or IPv6 prefix of its pool: what drain and remove act on.
struct PoolAddressArguments: ParsableArguments {
    @OptionGroup var server: ServerOptions

    @Argument(help: ArgumentHelp("The IPv4 address, or IPv6 prefix (2001:db8:10::/48).", valueName: "ip-or-prefix"))
    var address: String

    /// What to act on, parsed.
    enum Target: CustomStringConvertible {
        case address(IPv4Address)
        case prefix(IPv6Prefix)

        var description: String {
            switch self {
            case .address(let address): address.description
            case .prefix(let prefix): prefix.description
            }
        }
    }

    /// The address or prefix and a client to act on it with.
    func target() throws -> (Target, AllocatorClient) {
        let target: Target
        // A colon says IPv6 whatever else is wrong with the text, so the prefix's own parse
        // error (host bits set, a bad length, a missing /LENGTH) is the one to show.
        if address.contains(":") {
            do {
                target = .prefix(try IPv6Prefix(parsing: address))
            } catch {
                throw ValidationError("\(error); give one of the pool's IPv6 prefixes with /LENGTH (2001:db8:10::/48)")
            }
        } else if let v4 = try? IPv4Address(parsing: address) {
            target = .address(v4)
        } else {
            throw ValidationError("'\(address)' is neither an IPv4 address of the pool (203.0.113.10) nor one of its IPv6 prefixes with /LENGTH (2001:db8:10::/48)")
        }
        return (target, try server.client())
    }
}

struct PoolDrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Stop leasing an address's slices or an IPv6 prefix's prefixes; their leases run out.")

    @OptionGroup var target: PoolAddressArguments

    func run() async throws {
        let (target, client) = try target.target()
        switch target {
        case .address(let address): try await client.drain(address)
        case .prefix(let prefix): try await client.drain(prefix)
        }
        print("\(target) is draining: no new leases; remove it once its leases and quarantines are over")
    }
}

struct PoolRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove an address or IPv6 prefix that has no lease or quarantine left.")

    @OptionGroup var target: PoolAddressArguments

    func run() async throws {
        let (target, client) = try target.target()
        switch target {
        case .address(let address): try await client.removeAddress(address)
        case .prefix(let prefix): try await client.removePrefix(prefix)
        }
        print("\(target) removed; its history stays in the assignment log")
    }
}
