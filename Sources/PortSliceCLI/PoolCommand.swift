import ArgumentParser
import NIOHTTP1
import PortSliceControl
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

    @Option(help: ArgumentHelp("Ports to slice, LOW-HIGH.", valueName: "range"))
    var range = PortRange.nonSystemPorts.description

    struct NewAddress: Encodable {
        let address: String
        let country: String?
        let region: String?
        let city: String?
        let category: String
        let reputation: String?
        let tags: [String]
        let range: String
        let sliceSize: Int
    }

    func run() async throws {
        let feed = try Geofeed.read(readFile(file, what: "pool file"), source: file)
        let pool: EgressPool
        do { pool = try EgressPool(feed: feed) } catch { throw CommandFailure("\(file): \(error)") }
        let client = try server.client()
        var added = 0, present = 0
        for egress in pool.addresses {
            let traits = egress.traits
            let body = NewAddress(
                address: egress.address.description, country: traits.country?.rawValue, region: traits.region?.rawValue,
                city: traits.city, category: traits.category.rawValue, reputation: traits.reputation?.rawValue,
                tags: traits.tags, range: range, sliceSize: sliceSize)
            do {
                try await client.send(.POST, "/v1/pool", body: body)
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

    /// Sends `method` to the address's path under /v1/pool (plus `suffix`); the address it named.
    func send(_ method: HTTPMethod, suffix: String = "") async throws -> IPv4Address {
        let address = try IPv4Address(parsing: address)
        try await server.client().send(method, "/v1/pool/\(address)\(suffix)")
        return address
    }
}

struct PoolDrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Stop leasing an address's slices; its leases run out.")

    @OptionGroup var target: PoolAddressArguments

    func run() async throws {
        let address = try await target.send(.POST, suffix: "/drain")
        print("\(address) is draining: no new leases; remove it once its leases and quarantines are over")
    }
}

struct PoolRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove an address that has no lease or quarantine left.")

    @OptionGroup var target: PoolAddressArguments

    func run() async throws {
        let address = try await target.send(.DELETE)
        print("\(address) removed; its history stays in the assignment log")
    }
}
