#!/usr/bin/env python3
"""Runs a command and prints, as one JSON line on stderr, its wall time in
seconds and its peak resident memory (its own and its children's) in KiB.
Used by `cargo bench -p candlekeep --bench import`.

usage: measure.py COMMAND [ARG...]
"""
import json
import resource
import subprocess
import sys
import time

if len(sys.argv) < 2:
    sys.exit(__doc__)
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
took = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stdout.buffer.write(done.stdout)
if done.returncode != 0:
    sys.stderr.buffer.write(done.stderr)
print(json.dumps({"secs": took, "max_rss_kib": peak, "status": done.returncode}), file=sys.stderr)
sys.exit(done.returncode)
