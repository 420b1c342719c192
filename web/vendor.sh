#!/usr/bin/env bash
# Refreshes the front-end packages vendored into the binary from npm, as
# pinned by package-lock.json. The results are committed under
# crates/api/ui/vendor/ so that building candlekeep never needs npm or a
# network; `vendor.sh --check` (run by .ci/run) fails when they differ
# from what the lockfile gives.
set -euo pipefail
cd "$(dirname "$0")"
out=../crates/api/ui/vendor
npm ci --no-audit --no-fund --silent
files=(
  "node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js:lightweight-charts.js"
  "node_modules/lightweight-charts/LICENSE:lightweight-charts.LICENSE"
)
status=0
for pair in "${files[@]}"; do
  from=${pair%%:*} to=$out/${pair##*:}
  if [[ ${1:-} == --check ]]; then
    if ! cmp -s "$from" "$to"; then
      echo "vendored $to differs from $from (run web/vendor.sh)" >&2
      status=1
    fi
  else
    mkdir -p "$out" && cp "$from" "$to"
  fi
done
exit $status
