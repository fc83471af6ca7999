#!/usr/bin/env bash
# Installs the proxies portslice is compared with (microsocks and Dante, from Debian) and
# python3 (the benchmark's idle destination runs in it), and runs `portslice bench proxy` on a
# release build. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v microsocks >/dev/null || ! command -v danted >/dev/null || ! [ -x /usr/bin/python3 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends microsocks dante-server python3-minimal >/dev/null
fi
swift build -c release --product portslice >&2
exec .build/release/portslice bench proxy "$@"
