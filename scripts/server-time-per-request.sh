#!/bin/sh
# The CPU time per request of each of `serve`'s threads (the event loops summed) over one
# phase of `bench alloc --http-only`, with the switches onto a core per request, the size of
# the SQLite log at the phase's start and end, and the phase's row. From
# /proc/PID/task/TID/schedstat, between the benchmark's line that starts the phase and the one
# that starts the next. The README's paired figures ran two builds in turn:
#   for run in 1 2 3; do scripts/server-time-per-request.sh /tmp/before/portslice
#                        scripts/server-time-per-request.sh .build/release/portslice; done
# PHASE: acquire (the default) or renew. For how long each thread waited for a core, see
# scripts/thread-times.sh.
set -eu
binary=${1:?usage: server-time-per-request.sh PORTSLICE-BINARY [acquire|renew]}
phase=${2:-acquire}
case "$phase" in
    acquire) start="32 clients acquire" end="servers' CPU with no requests" row="http  acquire" ;;
    renew) start="renews all its leases" end="32 clients release" row="http  renew" ;;
    *) echo "PHASE is acquire or renew, not $phase" >&2; exit 2 ;;
esac
log=$(mktemp) table=$(mktemp) before=$(mktemp) after=$(mktemp)
trap 'rm -f "$log" "$table" "$before" "$after"' EXIT
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
wait_for "$start"
server=$(pgrep -f "$(basename "$binary") serve" | head -1)
wal="$(tr '\0' '\n' < /proc/"$server"/cmdline | sed -n '/^--data-dir$/{n;p;}')/portslice.sqlite-wal"
sample() {  # TID NAME RUN-NS SWITCHES, the event loops under one name
    for task in /proc/"$server"/task/*; do
        name=$(tr ' ' '_' < "$task/comm")
        case "$name" in NIO-*) name=event-loops ;; esac
        echo "${task##*/} $name $(cut -d' ' -f1,3 "$task/schedstat")"
    done | sort
}
sample > "$before"
log_start=$(stat -c %s "$wal" 2> /dev/null || echo 0)
wait_for "$end"
sample > "$after"
log_end=$(stat -c %s "$wal" 2> /dev/null || echo 0)
wait "$bench"
requests=$(grep -o 'for each of [0-9]* hosts' "$log" | head -1 | grep -o '[0-9]*')
join "$before" "$after" | awk -v n="$requests" '
    { run[$2] += $6 - $3; switches[$2] += $7 - $4 }
    END { for (name in run) if (run[name] >= 500 * n) printf "%-16s %5.0f us per request, %4.2f switches per request\n", name, run[name] / n / 1000, switches[name] / n }' | sort
echo "the SQLite log: $log_start bytes at the phase's start, $log_end at its end"
grep "$row" "$table"
