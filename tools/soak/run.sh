#!/usr/bin/env bash
# Soak benchmark: runs `candlekeep demo` (every venue, looping, real time)
# for MINUTES and samples its memory (VmRSS) and the store's size every
# INTERVAL seconds, then prints the samples and the growth after warm-up.
#
#   cargo build --release -p candlekeep
#   tools/soak/run.sh 60 30 > soak.tsv      # one hour, a sample every 30 s
#
# Nothing leaves the machine: the demo's venues are mocks on 127.0.0.1.
set -euo pipefail
minutes=${1:-60}
interval=${2:-30}
warmup_min=${3:-10}
bin=${CANDLEKEEP_BIN:-target/release/candlekeep}
[ -x "$bin" ] || { echo "build first: cargo build --release -p candlekeep" >&2; exit 1; }
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" --data-dir "$dir/data" --log warn demo --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/err" &
pid=$!
start=$(date +%s)
end=$((start + minutes * 60))
echo -e "elapsed_s\trss_kb\tstore_kb\trows_written"
while [ "$(date +%s)" -lt "$end" ]; do
  sleep "$interval"
  kill -0 "$pid" 2>/dev/null || { echo "demo died:" >&2; cat "$dir/err" >&2; exit 1; }
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  store=$(du -sk "$dir/data" | cut -f1)
  api=$(grep -m1 -o 'API on http://[0-9.:]*' "$dir/err" | sed 's|API on http://||')
  trades=$(curl -s "http://$api/metrics" | awk '/^candlekeep_store_rows_written_total/ {print $2}')
  echo -e "$(( $(date +%s) - start ))\t$rss\t$store\t${trades:-0}"
done | tee "$dir/samples"
awk -v w=$((warmup_min * 60)) -F'\t' '
  NR > 1 && $1 >= w { if (!first) { first = $2; t0 = $1 } last = $2; t1 = $1 }
  END {
    if (!first) { print "too short for the warm-up" > "/dev/stderr"; exit 1 }
    printf "after %d min warm-up: RSS %d KB -> %d KB over %.1f min (%+.1f KB/min)\n",
      w / 60, first, last, (t1 - t0) / 60, (last - first) / ((t1 - t0) / 60) > "/dev/stderr"
  }' "$dir/samples"
kill -INT "$pid"
wait "$pid" || true
