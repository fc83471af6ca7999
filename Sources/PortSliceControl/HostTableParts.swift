import PortSliceCore

/// Every host's part of one version of the slice table, and the version in which each host's
/// part last changed, so that a host's long poll answers when its own slices change rather
/// than at every change anywhere in the fleet (a change would otherwise wake every host guard
/// at once, and each would filter the whole table).
struct HostTableParts: Sendable {
    let version: Int64
    private let parts: [String: SliceTable]
    /// The hosts whose part differed between two of the versions compared, and the later one;
    /// a host not listed has had the same part since `known`.
    private let changedIn: [String: Int64]
    /// The version of the first table these were made from: no part is known to have changed
    /// before it, so a host that asks from before gets its part.
    private let known: Int64
    /// The most recent versions these parts were compared across, oldest first: between two of
    /// them a change is known exactly, while a version between them (another replica's, say)
    /// could have seen a part that came and went.
    private let compared: [Int64]
    static let versionsRemembered = 64

    /// `table`'s parts, each compared with its part in `previous` (an older version's).
    init(_ table: SliceTable, after previous: HostTableParts?) {
        version = table.version
        parts = table.partsByHost()
        known = previous?.known ?? table.version
        var changedIn = previous?.changedIn ?? [:]
        if let previous {
            for host in Set(parts.keys).union(previous.parts.keys) where !Self.sameSlices(parts[host], previous.parts[host]) {
                changedIn[host] = table.version
            }
        }
        self.changedIn = changedIn
        compared = Array(((previous?.compared ?? []) + [table.version]).suffix(Self.versionsRemembered))
    }

    /// `host`'s part (empty when it holds nothing), with this version.
    func part(of host: String) -> SliceTable {
        parts[host] ?? SliceTable(version: version, slices: [], prefixes: [])
    }

    /// The version in which `host`'s part last changed, as far as these parts know.
    func changed(_ host: String) -> Int64 {
        changedIn[host] ?? known
    }

    /// Whether `host`'s part is known to be the same now as at version `since`: `since` must be
    /// one of the versions compared (one this replica answered with) or this one or later.
    func unchanged(_ host: String, since: Int64) -> Bool {
        (compared.contains(since) || since >= version) && changed(host) <= since
    }

    private static func sameSlices(_ one: SliceTable?, _ other: SliceTable?) -> Bool {
        one?.slices == other?.slices && one?.prefixes == other?.prefixes
    }
}
