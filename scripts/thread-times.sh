#!/bin/sh
# Each thread of a process: the share of SECONDS it ran, and the share it was runnable but
# waiting for a core (from /proc/PID/task/*/schedstat, in nanoseconds). How the README's
# "runnable but waiting" figures for `serve` during `bench alloc`'s acquire phase were read:
#   .build/release/portslice bench alloc --http-only &
#   # once it prints "32 clients acquire":
#   scripts/thread-times.sh "$(pgrep -f 'portslice serve' | head -1)" 1.2
set -eu
pid=${1:?usage: thread-times.sh PID [SECONDS]}
seconds=${2:-1}
[ -d "/proc/$pid/task" ] || { echo "no process $pid" >&2; exit 1; }
sample() { for task in /proc/"$pid"/task/*; do echo "${task##*/} $(tr ' ' '_' < "$task/comm") $(cat "$task/schedstat")"; done | sort; }
before=$(sample)
sleep "$seconds"
after=$(sample)
echo "$before" > "${TMPDIR:-/tmp}/thread-times.$$.1"
echo "$after" > "${TMPDIR:-/tmp}/thread-times.$$.2"
join "${TMPDIR:-/tmp}/thread-times.$$.1" "${TMPDIR:-/tmp}/thread-times.$$.2" |
    awk -v s="$seconds" '{ printf "%-8s %-20s ran %5.1f%%  waited for a core %5.1f%%\n", $1, $2, ($7 - $3) / (s * 1e7), ($8 - $4) / (s * 1e7) }'
rm -f "${TMPDIR:-/tmp}/thread-times.$$.1" "${TMPDIR:-/tmp}/thread-times.$$.2"
