#!/usr/bin/env python3
"""Sends HTTP requests to a server at a fixed rate and reports the server's CPU meanwhile.

The README's "a paced request costs" figures come from this: one request at a time, spread
evenly over the run on a few keep-alive connections in turn, as 10,000 agents renewing every
10 s would arrive, while the server's user and system time is read from /proc/PID/stat. Only
the server is measured; this script's own CPU is not counted.

    PORTSLICE_ADMIN_TOKEN=$(openssl rand -hex 32) .build/release/portslice serve \\
        --data-dir /tmp/paced --listen 127.0.0.1:18555 &
    python3 scripts/paced-requests.py --port 18555 --pid $! --path /healthz   # --connections 1 for one
    kill $!; rm -rf /tmp/paced
"""
import argparse
import http.client
import os
import socket
import sys
import time


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        sys.exit(f"no process {pid} to measure (--pid): is the server running?")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_listening(port, seconds=10):
    """Returns once 127.0.0.1:port accepts a connection (the server may still be starting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nothing listens on 127.0.0.1:{port} after {seconds} s (--port)")
            time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the server's port on 127.0.0.1")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id, whose CPU is read")
    parser.add_argument("--path", default="/healthz", help="what to ask for (GET)")
    parser.add_argument("--token", help="a bearer token to send")
    parser.add_argument("--requests", type=int, default=10000, help="how many to send")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests a second")
    parser.add_argument("--connections", type=int, default=100, help="keep-alive connections, used in turn")
    options = parser.parse_args()
    if options.requests < 1 or options.rate <= 0 or options.connections < 1:
        sys.exit("--requests, --rate and --connections must be positive")

    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    cpu_seconds(options.pid)
    wait_until_listening(options.port)
    connections = [http.client.HTTPConnection("127.0.0.1", options.port, timeout=5) for _ in range(options.connections)]
    statuses = {}
    started, cpu_before = time.monotonic(), cpu_seconds(options.pid)
    for number in range(options.requests):
        delay = started + number / options.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        connection = connections[number % len(connections)]
        connection.request("GET", options.path, headers=headers)
        response = connection.getresponse()
        response.read()
        statuses[response.status] = statuses.get(response.status, 0) + 1
    elapsed, cpu_after = time.monotonic() - started, cpu_seconds(options.pid)
    late = max(0.0, elapsed - options.requests / options.rate)
    print(f"{options.requests} x GET {options.path} over {elapsed:.2f} s ({late:.2f} s behind the pace): "
          f"the server used {100 * (cpu_after - cpu_before) / elapsed:.1f}% of a core; statuses {statuses}")
    if any(not 200 <= status < 300 for status in statuses):
        sys.exit("some answers were not 2xx: the figure above is not of the requests asked for")


if __name__ == "__main__":
    main()
