#!/bin/bash
# What an index on a lease's expiry costs a PostgreSQL renewal (the README's "4 ms for a
# 150-lease renewal statement, 1 ms without the index"): a scratch copy of the slices table
# (1,000 addresses x 31 slices, 30,000 leased to 10,000 hosts, the allocator's indexes), and
# pgbench running the allocator's renewal statement for 50 hosts (150 leases) at a time, with
# the index on `expires` and then without it, when PostgreSQL can update the rows in place.
#
#     scripts/renewal-index-cost.sh postgres://postgres@127.0.0.1:55432/postgres
#
# Creates the database portslice_renewal_index_cost on that server and drops it afterwards.
set -euo pipefail
url=${1:?usage: $0 POSTGRES_URL (a server where this user may create a database)}
command -v pgbench > /dev/null || { echo "pgbench is missing: apt-get install postgresql-client" >&2; exit 1; }
database=portslice_renewal_index_cost
scratch="${url%/*}/$database"
psql -q "$url" -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
trap 'psql -q "$url" -c "DROP DATABASE IF EXISTS $database"' EXIT
psql -q "$scratch" <<'SQL'
CREATE EXTENSION btree_gist;
CREATE TABLE slices (
    address bigint, slice_index bigint, ports text NOT NULL, state text NOT NULL, lease_id bigint UNIQUE, host text,
    expires bigint, quarantine_until bigint, started bigint, renewed bigint, wanted text, port_ranges int4multirange NOT NULL,
    PRIMARY KEY (address, slice_index), EXCLUDE USING gist (address WITH =, port_ranges WITH &&));
CREATE INDEX slices_free ON slices (address, slice_index) WHERE state = 'free';
CREATE INDEX slices_by_expiry ON slices (expires) WHERE state = 'leased';
CREATE INDEX slices_by_quarantine ON slices (quarantine_until) WHERE state = 'quarantined';
CREATE INDEX slices_by_host ON slices (host) WHERE state = 'leased';
INSERT INTO slices
SELECT a, i, '1024-3071', 'free', NULL, NULL, NULL, NULL, NULL, NULL, NULL, int4multirange(int4range(1024 + i * 2048, 1024 + (i + 1) * 2048))
FROM generate_series(1, 1000) a, generate_series(0, 30) i;
UPDATE slices SET state = 'leased', lease_id = address * 100 + slice_index, host = 'host' || ((address - 1) * 31 + slice_index) / 3,
    expires = 1000000, started = 0, renewed = 0, wanted = '{"country":"US"}'
WHERE (address - 1) * 31 + slice_index < 30000;
VACUUM ANALYZE slices;
SQL
renewal=$(mktemp)
trap 'rm -f "$renewal"; psql -q "$url" -c "DROP DATABASE IF EXISTS $database"' EXIT
cat > "$renewal" <<'SQL'
\set base random(0, 9949)
UPDATE slices SET expires = expires + 1, renewed = :base WHERE state = 'leased' AND expires > 0
AND host IN (SELECT 'host' || g FROM generate_series(:base, :base + 49) g) RETURNING lease_id, host, address, slice_index, ports, expires, started;
SQL
measure() {
    for round in 1 2; do
        echo "$1, round $round: $(pgbench -n -t 600 -f "$renewal" "$scratch" 2>&1 | grep 'latency average')"
    done
}
measure "with the index on expires"
psql -q "$scratch" -c "DROP INDEX slices_by_expiry"
measure "without it"
psql -At "$scratch" -c "SELECT 'updates ' || n_tup_upd || ', of them in place (HOT) ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'slices'"
