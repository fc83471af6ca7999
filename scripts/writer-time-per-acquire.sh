#!/bin/sh
# The SQLite writer thread's CPU time per acquire over `bench alloc --http-only`'s acquire
# phase (from /proc/PID/task/TID/schedstat, from the line "32 clients acquire" to the next
# phase's), beside the phase's row. The README's paired figures ran two builds in turn:
#   for run in 1 2 3; do scripts/writer-time-per-acquire.sh /tmp/before/portslice
#                        scripts/writer-time-per-acquire.sh .build/release/portslice; done
set -eu
binary=${1:?usage: writer-time-per-acquire.sh PORTSLICE-BINARY}
log=$(mktemp) table=$(mktemp)
trap 'rm -f "$log" "$table"' EXIT
"$binary" bench alloc --http-only > "$table" 2> "$log" &
bench=$!
wait_for() {  # a line of the benchmark's progress, for at most 3 minutes
    tries=0
    until grep -q "$1" "$log"; do
        tries=$((tries + 1))
        [ "$tries" -lt 3600 ] || { echo "no \"$1\" from the benchmark" >&2; exit 1; }
        sleep 0.05
    done
}
wait_for "32 clients acquire"
server=$(pgrep -f "$(basename "$binary") serve" | head -1)
writer=$(grep -l '^sqlite-writer$' /proc/"$server"/task/*/comm | head -1)
writer=${writer%/comm}
before=$(cut -d' ' -f1 "$writer/schedstat")
wait_for "servers' CPU with no requests"
after=$(cut -d' ' -f1 "$writer/schedstat")
wait "$bench"
acquires=$(grep -o 'for each of [0-9]* hosts' "$log" | head -1 | grep -o '[0-9]*')
echo "$binary: $(( (after - before) / acquires / 1000 )) us of the writer per acquire"
grep 'http  acquire' "$table"
