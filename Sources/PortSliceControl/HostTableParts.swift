import PortSliceCore

/// Every host's part of one version of the slice table, and the version in which each host's
/// part last changed, so that a host's long poll answers when its own slices change rather
/// than at every change anywhere in the fleet (a change would otherwise wake every host guard
/// at once, and each would filter the whole table).
struct HostTableParts: Sendable {
    let version: Int64
    private let parts: [String: SliceTable]
    private let changedIn: [String: Int64]
    /// The version of the first table these were made from: no part is known to have changed
    /// before it, so a host that asks from before gets its part.
    private let known: Int64

    /// `table`'s parts, each compared with its part in `previous` (an older version's).
    init(_ table: SliceTable, after previous: HostTableParts?) {
        version = table.version
        parts = table.partsByHost()
        known = previous?.known ?? table.version
        // Hosts in neither table keep the version their part last changed in (the part that
        // went away); the others are compared.
        var changedIn = previous?.changedIn ?? [:]
        for host in Set(parts.keys).union(previous.map { Array($0.parts.keys) } ?? []) {
            if let previous, Self.sameSlices(parts[host], previous.parts[host]) {
                changedIn[host] = previous.changed(host)
            } else {
                changedIn[host] = table.version
            }
        }
        self.changedIn = changedIn
    }

    /// `host`'s part (empty when it holds nothing), with this version.
    func part(of host: String) -> SliceTable {
        parts[host] ?? SliceTable(version: version, slices: [], prefixes: [])
    }

    /// The version in which `host`'s part last changed, as far as these parts know.
    func changed(_ host: String) -> Int64 {
        changedIn[host] ?? known
    }

    private static func sameSlices(_ one: SliceTable?, _ other: SliceTable?) -> Bool {
        one?.slices == other?.slices && one?.prefixes == other?.prefixes
    }
}
