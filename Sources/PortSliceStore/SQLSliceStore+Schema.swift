import PortSliceCore

extension SQLSliceStore {
    /// Versioned schema steps per dialect; a released step never changes.
    static func migrations(_ dialect: SQLDialect) -> [(version: Int, statements: [String])] {
        let integer = dialect == .sqlite ? "INTEGER" : "BIGINT"
        let leaseKey = dialect == .sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY"
        // SQLite compares text bytewise already; PostgreSQL's default collation may not.
        let hex = dialect == .sqlite ? "TEXT" : "TEXT COLLATE \"C\""
        var slices = """
            CREATE TABLE slices (
                address \(integer) NOT NULL REFERENCES addresses(address),
                slice_index \(integer) NOT NULL,
                ports TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('free', 'leased', 'quarantined', 'draining')),
                lease_id \(integer) UNIQUE,
                host TEXT,
                expires \(integer),
                quarantine_until \(integer),
                PRIMARY KEY (address, slice_index),
                CHECK ((state = 'leased') = (lease_id IS NOT NULL AND host IS NOT NULL AND expires IS NOT NULL)),
                CHECK ((state = 'quarantined') = (quarantine_until IS NOT NULL))
            """
        var extensions: [String] = []
        if dialect == .postgres {
            extensions = ["CREATE EXTENSION IF NOT EXISTS btree_gist"]
            slices += """
                ,
                    port_ranges int4multirange NOT NULL,
                    EXCLUDE USING gist (address WITH =, port_ranges WITH &&)
                """
        }
        return [
            (1, extensions + [
                """
                CREATE TABLE addresses (
                    address \(integer) PRIMARY KEY,
                    traits TEXT NOT NULL,
                    plan TEXT NOT NULL,
                    draining \(integer) NOT NULL DEFAULT 0 CHECK (draining IN (0, 1)))
                """,
                slices + ")",
                """
                CREATE TABLE assignments (
                    lease_id \(leaseKey),
                    host TEXT NOT NULL,
                    address \(integer) NOT NULL,
                    slice_index \(integer) NOT NULL,
                    ports TEXT NOT NULL,
                    protocols TEXT NOT NULL,
                    started \(integer) NOT NULL,
                    ended \(integer) CHECK (ended IS NULL OR ended >= started))
                """,
                "CREATE INDEX assignments_by_address ON assignments (address, started)",
            ]),
            (2, [
                """
                CREATE TABLE hosts (
                    name TEXT PRIMARY KEY,
                    labels TEXT NOT NULL,
                    token_hash TEXT NOT NULL,
                    created \(integer) NOT NULL)
                """,
            ]),
            (3, [
                "CREATE TABLE table_version (id \(integer) PRIMARY KEY CHECK (id = 1), version \(integer) NOT NULL)",
                "INSERT INTO table_version (id, version) VALUES (1, 0)",
            ]),
            // Every request looks up slices by state (expiry, quarantine end, free slices per
            // address) and by holder; without these each one scans the whole table.
            (4, [
                // Partial indexes, one per state that is searched, so that a query by holder is
                // never planned over a state index that covers every leased slice.
                "CREATE INDEX slices_free ON slices (address, slice_index) WHERE state = 'free'",
                "CREATE INDEX slices_by_expiry ON slices (expires) WHERE state = 'leased'",
                "CREATE INDEX slices_by_quarantine ON slices (quarantine_until) WHERE state = 'quarantined'",
                "CREATE INDEX slices_by_host ON slices (host) WHERE state = 'leased'",
                // A leased slice carries its lease's start, so a renewal is one statement.
                "ALTER TABLE slices ADD COLUMN started \(integer)",
                "UPDATE slices SET started = (SELECT a.started FROM assignments a WHERE a.lease_id = slices.lease_id) WHERE state = 'leased'",
                // Free slices per address, kept by the database on every change of a slice's
                // state, so placement reads one narrow row per address instead of counting
                // slices. A table of its own: on PostgreSQL every count change writes a new row
                // version, which must not copy an address's plan.
                """
                CREATE TABLE free_counts (
                    address \(integer) PRIMARY KEY REFERENCES addresses(address),
                    traits TEXT NOT NULL,
                    free \(integer) NOT NULL CHECK (free >= 0))
                """,
                """
                INSERT INTO free_counts (address, traits, free)
                SELECT a.address, a.traits, (SELECT COUNT(*) FROM slices s WHERE s.address = a.address AND s.state = 'free') FROM addresses a
                """,
            ] + freeSliceCounting(dialect)),
            // Edges read the slice table with tokens of their own rather than the admin's.
            (5, [
                """
                CREATE TABLE edges (
                    name TEXT PRIMARY KEY,
                    token_hash TEXT NOT NULL,
                    created \(integer) NOT NULL)
                """,
            ]),
            // The console: read-only viewers; which table version each edge applied; when each
            // lease was last renewed and for which traits it was asked (columns of the rows
            // acquisitions and renewals write anyway, so they cost no statement).
            (6, [
                """
                CREATE TABLE viewers (
                    name TEXT PRIMARY KEY,
                    token_hash TEXT NOT NULL,
                    created \(integer) NOT NULL)
                """,
                "ALTER TABLE edges ADD COLUMN applied_version \(integer)",
                "ALTER TABLE edges ADD COLUMN reported \(integer)",
                "ALTER TABLE slices ADD COLUMN renewed \(integer)",
                "ALTER TABLE slices ADD COLUMN wanted TEXT",
                "UPDATE slices SET renewed = started WHERE state = 'leased'",
            ]),
            // IPv6 pool prefixes, out of which hosts lease prefixes of their own. Prefixes are
            // kept as 32 hex digits (network and last address), which sort as the addresses do
            // (byte order: "C" collation on PostgreSQL), so containment is a range test on
            // both engines. A sub-prefix is free unless `prefix_leases` has a row for it: a
            // /48 has 65,536 /64s, which are not listed. The primary key on the sub-prefix's
            // network keeps two leases or quarantines off one prefix, since pool prefixes do
            // not overlap and all sub-prefixes of one have the same length.
            (7, [
                """
                CREATE TABLE pool_prefixes (
                    network \(hex) PRIMARY KEY,
                    last \(hex) NOT NULL,
                    length \(integer) NOT NULL CHECK (length BETWEEN 0 AND 63),
                    lease_length \(integer) NOT NULL CHECK (lease_length > length AND lease_length <= 64),
                    traits TEXT NOT NULL,
                    draining \(integer) NOT NULL DEFAULT 0 CHECK (draining IN (0, 1)))
                """,
                """
                CREATE TABLE prefix_leases (
                    network \(hex) PRIMARY KEY,
                    pool \(hex) NOT NULL REFERENCES pool_prefixes(network),
                    pool_length \(integer) NOT NULL,
                    length \(integer) NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('leased', 'quarantined')),
                    lease_id \(integer) UNIQUE,
                    host TEXT,
                    started \(integer),
                    expires \(integer),
                    quarantine_until \(integer),
                    CHECK ((state = 'leased') = (lease_id IS NOT NULL AND host IS NOT NULL AND expires IS NOT NULL AND started IS NOT NULL)),
                    CHECK ((state = 'quarantined') = (quarantine_until IS NOT NULL)))
                """,
                "CREATE INDEX prefix_leases_by_pool ON prefix_leases (pool)",
                "CREATE INDEX prefix_leases_by_expiry ON prefix_leases (expires) WHERE state = 'leased'",
                "CREATE INDEX prefix_leases_by_quarantine ON prefix_leases (quarantine_until) WHERE state = 'quarantined'",
                "CREATE INDEX prefix_leases_by_host ON prefix_leases (host) WHERE state = 'leased'",
                """
                CREATE TABLE prefix_assignments (
                    lease_id \(leaseKey),
                    host TEXT NOT NULL,
                    network \(hex) NOT NULL,
                    last \(hex) NOT NULL,
                    length \(integer) NOT NULL,
                    started \(integer) NOT NULL,
                    ended \(integer) CHECK (ended IS NULL OR ended >= started))
                """,
                "CREATE INDEX prefix_assignments_by_network ON prefix_assignments (network, started)",
            ]),
            // Placement sums free slices per trait class and then reads the closest classes'
            // addresses: in index order, without sorting or reading every address.
            (8, ["CREATE INDEX free_counts_by_traits ON free_counts (traits, free)"]),
            // Renewals change `expires` on every leased slice each period. Indexed, it made
            // each renewal write an entry into every index of the row on PostgreSQL (a
            // column of any index forbids the in-place, heap-only update), the exclusion
            // index among them: 4 ms for 150 leases, 1 ms without it
            // (scripts/renewal-index-cost.sh). What the index answered
            // (is anything due?) is now kept as one lower bound, `slice_expiry.due`, the
            // earliest expiry of a leased slice when it was last computed (or lowered).
            // Space left in each page lets those updates stay on their page.
            (9, [
                "CREATE TABLE slice_expiry (id \(integer) PRIMARY KEY CHECK (id = 1), due \(integer))",
                "INSERT INTO slice_expiry (id, due) SELECT 1, MIN(expires) FROM slices WHERE state = 'leased'",
                "DROP INDEX slices_by_expiry",
            ] + (dialect == .postgres ? ["ALTER TABLE slices SET (fillfactor = 90)"] : [])),
            // Placement starts from the free slices per trait class; summed over every
            // address's row on each acquire, that was the acquire's slowest statement (52 us of
            // about 150 with 1,000 addresses). The sums are kept in a row per class, by the
            // database, from every change of `free_counts`.
            (10, [
                "CREATE TABLE class_free_counts (traits TEXT PRIMARY KEY, free \(integer) NOT NULL CHECK (free >= 0))",
                "INSERT INTO class_free_counts (traits, free) SELECT traits, SUM(free) FROM free_counts GROUP BY traits",
            ] + classFreeCounting(dialect)),
        ] + sqliteOnly(dialect)
    }

    /// Steps of SQLite alone. 11: its acquires place from the free slices kept in memory
    /// (`FreeSliceMirror`), which never read the sums per class or search `free_counts` by
    /// class, so keeping them was work in every acquire for nothing: for each slice leased, a
    /// trigger's update of the class's row and an index entry moved (12-16% of the writer's
    /// time per acquire). `free_counts` stays: its changes are how the mirror hears of a slice
    /// that became free or stopped being free.
    ///
    /// 12: for the same reason, the index of free slices. Placement takes the lowest free
    /// slices from memory, and what reads them again (at start, and an address whose free
    /// slices changed) reads few enough rows through the primary key's index. Kept, each
    /// acquire moved an entry out of it for every slice leased: 2.5 of the 12.6 pages a
    /// batched acquire wrote to the log.
    static func sqliteOnly(_ dialect: SQLDialect) -> [(version: Int, statements: [String])] {
        guard dialect == .sqlite else { return [] }
        let drops: [String] = [
            "DROP TRIGGER free_counts_class_inserted", "DROP TRIGGER free_counts_class_changed",
            "DROP TRIGGER free_counts_class_moved", "DROP TRIGGER free_counts_class_deleted",
            "DROP TABLE class_free_counts", "DROP INDEX free_counts_by_traits",
        ]
        return [(11, drops), (12, ["DROP INDEX slices_free"])]
    }

    /// Triggers that keep `class_free_counts.free` equal to the sum of `free_counts.free` over
    /// the addresses of each trait class.
    static func classFreeCounting(_ dialect: SQLDialect) -> [String] {
        switch dialect {
        case .sqlite:
            let add = """
                INSERT INTO class_free_counts (traits, free) VALUES (NEW.traits, NEW.free)
                ON CONFLICT (traits) DO UPDATE SET free = free + excluded.free;
                """
            let subtract = "UPDATE class_free_counts SET free = free - OLD.free WHERE traits = OLD.traits;"
            return [
                "CREATE TRIGGER free_counts_class_inserted AFTER INSERT ON free_counts BEGIN \(add) END",
                """
                CREATE TRIGGER free_counts_class_changed AFTER UPDATE OF free ON free_counts WHEN OLD.traits = NEW.traits
                BEGIN UPDATE class_free_counts SET free = free + NEW.free - OLD.free WHERE traits = NEW.traits; END
                """,
                """
                CREATE TRIGGER free_counts_class_moved AFTER UPDATE OF free, traits ON free_counts WHEN OLD.traits <> NEW.traits
                BEGIN \(subtract) \(add) END
                """,
                "CREATE TRIGGER free_counts_class_deleted AFTER DELETE ON free_counts BEGIN \(subtract) END",
            ]
        case .postgres:
            return [
                """
                CREATE FUNCTION portslice_count_class_free() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP = 'UPDATE' AND OLD.traits = NEW.traits THEN
                        UPDATE class_free_counts SET free = free + NEW.free - OLD.free WHERE traits = NEW.traits;
                        RETURN NULL;
                    END IF;
                    IF TG_OP IN ('UPDATE', 'DELETE') THEN
                        UPDATE class_free_counts SET free = free - OLD.free WHERE traits = OLD.traits;
                    END IF;
                    IF TG_OP IN ('UPDATE', 'INSERT') THEN
                        INSERT INTO class_free_counts (traits, free) VALUES (NEW.traits, NEW.free)
                        ON CONFLICT (traits) DO UPDATE SET free = class_free_counts.free + EXCLUDED.free;
                    END IF;
                    RETURN NULL;
                END $$
                """,
                """
                CREATE TRIGGER free_counts_count_class AFTER INSERT OR UPDATE OF free, traits OR DELETE ON free_counts
                FOR EACH ROW EXECUTE FUNCTION portslice_count_class_free()
                """,
            ]
        }
    }

    /// Triggers that keep `free_counts.free` equal to the address's slices in state free (an
    /// address's row is inserted after its slices, with their number).
    static func freeSliceCounting(_ dialect: SQLDialect) -> [String] {
        switch dialect {
        case .sqlite:
            return [
                """
                CREATE TRIGGER slices_free_inserted AFTER INSERT ON slices WHEN NEW.state = 'free'
                BEGIN UPDATE free_counts SET free = free + 1 WHERE address = NEW.address; END
                """,
                """
                CREATE TRIGGER slices_free_changed AFTER UPDATE OF state ON slices WHEN (OLD.state = 'free') <> (NEW.state = 'free')
                BEGIN
                    UPDATE free_counts SET free = free + (CASE WHEN NEW.state = 'free' THEN 1 ELSE -1 END)
                    WHERE address = NEW.address;
                END
                """,
                """
                CREATE TRIGGER slices_free_deleted AFTER DELETE ON slices WHEN OLD.state = 'free'
                BEGIN UPDATE free_counts SET free = free - 1 WHERE address = OLD.address; END
                """,
            ]
        case .postgres:
            return [
                """
                CREATE FUNCTION portslice_count_free_slices() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state = 'free' THEN
                        UPDATE free_counts SET free = free - 1 WHERE address = OLD.address;
                    END IF;
                    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.state = 'free' THEN
                        UPDATE free_counts SET free = free + 1 WHERE address = NEW.address;
                    END IF;
                    RETURN NULL;
                END $$
                """,
                """
                CREATE TRIGGER slices_count_free AFTER INSERT OR UPDATE OF state OR DELETE ON slices
                FOR EACH ROW EXECUTE FUNCTION portslice_count_free_slices()
                """,
            ]
        }
    }
}
