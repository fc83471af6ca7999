import ArgumentParser
import PortSliceAPI
import PortSliceCore

/// `portslice pool`: the egress addresses the allocator slices.
struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Add, drain and remove egress addresses (admin).",
        subcommands: [PoolImportCommand.self, PoolDrainCommand.self, PoolRemoveCommand.self]
    )
}

struct PoolImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Add the addresses of a pool geofeed (with trait columns); addresses already present are kept.",
        discussion: "Example: portslice pool import pool.csv --slice-size 2048"
    )

    @OptionGroup var server: ServerOptions

    @Argument(help: ArgumentHelp("Pool geofeed: prefix,country,region,city,postal,category,reputation,tags.", valueName: "file"))
    var file: String

    @Option(help: "Ports per slice.")
    var sliceSize = 2048

    @Option(help: ArgumentHelp("Ports to slice, LOW-HIGH.", valueName: "range"), transform: { try PortRange(parsing: $0) })
    var range = PortRange.nonSystemPorts

    func run() async throws {
        let feed = try Geofeed.read(readFile(file, what: "pool file"), source: file)
        let pool: EgressPool
        do { pool = try EgressPool(feed: feed) } catch { throw CommandFailure("\(file): \(error)") }
        let client = try server.client()
        var added = 0, present = 0
        for egress in pool.addresses {
            do {
                try await client.addAddress(NewAddress(address: egress.address, traits: egress.traits, range: range, sliceSize: sliceSize))
                added += 1
            } catch let failure as APIFailure where failure.status == 409 {
                present += 1
            }
        }
        print("\(file): \(added) address(es) added, \(present) already in the pool")
    }
}

/// The allocator and one address of its pool: what drain and remove act on.
struct PoolAddressArguments: ParsableArguments {
    @OptionGroup var server: ServerOptions

    @Argument(help: ArgumentHelp("The address.", valueName: "ip"))
    var address: String

    /// The address and a client to act on it with.
    func target() throws -> (IPv4Address, AllocatorClient) {
        (try IPv4Address(parsing: address), try server.client())
    }
}

struct PoolDrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Stop leasing an address's slices; its leases run out.")

    @OptionGroup var target: PoolAddressArguments

    func run() async throws {
        let (address, client) = try target.target()
        try await client.drain(address)
        print("\(address) is draining: no new leases; remove it once its leases and quarantines are over")
    }
}

struct PoolRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove an address that has no lease or quarantine left.")

    @OptionGroup var target: PoolAddressArguments

    func run() async throws {
        let (address, client) = try target.target()
        try await client.removeAddress(address)
        print("\(address) removed; its history stays in the assignment log")
    }
}
