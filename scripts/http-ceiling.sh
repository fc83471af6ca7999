#!/usr/bin/env bash
# What HTTP alone costs the allocator here, apart from its store: `portslice serve` (SQLite,
# empty pool) answering `GET /healthz` (no token, no database) and `GET /v1/slices` with a host
# token, to 32 keep-alive clients that each send the next request when the last is answered
# (wrk, from Debian), beside the server's CPU from /proc. The README's "HTTP is not the limit"
# figures (Benchmarks, Allocation) come from this. Needs root for apt-get when wrk, openssl,
# curl or bc is missing. PORTSLICE=FILE runs that executable instead of building one; PORT
# (17399) is where it listens.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null || ! command -v bc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk openssl curl bc >/dev/null
fi
portslice=${PORTSLICE:-}
if [ -z "$portslice" ]; then
  swift build -c release --product portslice >&2
  portslice=.build/release/portslice
fi

work=$(mktemp -d)
admin_token=$(openssl rand -hex 32)
port=${PORT:-17399}
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
  echo "something already answers on 127.0.0.1:$port; stop it or set PORT" >&2; exit 1
fi
# The caller's PORTSLICE_* settings (a database, TLS, a config file) are not this run's.
for setting in $(compgen -e | grep '^PORTSLICE_' || true); do unset "$setting"; done
PORTSLICE_ADMIN_TOKEN=$admin_token "$portslice" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
if ! curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; then
  echo "portslice serve did not answer on 127.0.0.1:$port within 10 s; its log ends:" >&2; tail -20 "$work/log" >&2; exit 1
fi
host_token=$(curl -fs -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' -d '{"name": "h1"}' \
  "http://127.0.0.1:$port/v1/hosts" | sed 's/.*"token" *: *"\([^"]*\)".*/\1/')

# The server's user and system CPU, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }

# measure LABEL PATH [TOKEN]
measure() {
  local header=()
  if [ $# -gt 2 ]; then header=(-H "Authorization: Bearer $3"); fi
  local before started
  before=$(ticks); started=$(date +%s.%N)
  wrk -t2 -c32 -d5s --latency "${header[@]}" "http://127.0.0.1:$port$2" >"$work/wrk"
  local spent elapsed
  spent=$(( $(ticks) - before )); elapsed=$(echo "$(date +%s.%N) - $started" | bc -l)
  local rate p50 p99
  rate=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$work/wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk")
  printf '%-32s %7s req/s  p50 %-8s p99 %-8s server CPU %3.0f%% of a core\n' "$1" "$rate" "$p50" "$p99" \
    "$(echo "$spent / $(getconf CLK_TCK) / $elapsed * 100" | bc -l)"
  if grep -q "Non-2xx" "$work/wrk"; then grep "Non-2xx" "$work/wrk"; exit 1; fi
}

measure "GET /healthz" /healthz
measure "GET /v1/slices (host token)" /v1/slices "$host_token"
