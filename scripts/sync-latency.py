#!/usr/bin/env python3
"""How long one commit's sync takes on this disk, alone: PAGES 4 KiB pages written over a
64 MiB file (as SQLite writes an acquire batch's log frames, one write each), then fsync,
ROUNDS times with 4 ms between (a commit's pace in `bench alloc`'s acquire phase). Prints p50,
p90, p99 and the longest. The README's "a sync of 400 pages alone" figure:
    python3 scripts/sync-latency.py [DIRECTORY] [PAGES] [ROUNDS]   # defaults: /tmp 400 600
"""
import os
import sys
import tempfile
import time

directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
pages = int(sys.argv[2]) if len(sys.argv) > 2 else 400
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 600
span = 64 << 20

fd, path = tempfile.mkstemp(prefix="sync-latency-", dir=directory)
try:
    # The file written out and synced first, so the rounds overwrite it as SQLite's log is
    # overwritten once it has started over.
    block = b"\0" * (1 << 20)
    for offset in range(0, span, len(block)):
        os.pwrite(fd, block, offset)
    os.fsync(fd)
    page = os.urandom(4096)
    offset, times = 0, []
    for _ in range(rounds):
        for _ in range(pages):
            os.pwrite(fd, page, offset)
            offset = (offset + len(page)) % span
        started = time.perf_counter()
        os.fsync(fd)
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.004)
    times.sort()
    at = lambda share: times[min(len(times) - 1, int(len(times) * share))]
    print(f"fsync after {pages} pages, {rounds} rounds: p50 {at(0.5):.2f} ms, p90 {at(0.9):.2f} ms, "
          f"p99 {at(0.99):.2f} ms, longest {times[-1]:.2f} ms")
finally:
    os.close(fd)
    os.unlink(path)
