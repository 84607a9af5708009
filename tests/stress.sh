#!/usr/bin/env bash
# Issue 9's check: the whole suite N times in a row (default 5) with two CPU-burning
# processes beside it. Logs and a one-line summary per run go to $OUT (default
# /tmp/callhome-stress). Run from anywhere: `bash tests/stress.sh`.
set -u
cd "$(dirname "$0")/.."
N=${N:-5}
OUT=${OUT:-/tmp/callhome-stress}
mkdir -p "$OUT"
burn() { while :; do :; done; }
burn & B1=$!
burn & B2=$!
trap 'kill $B1 $B2 2>/dev/null' EXIT
for i in $(seq 1 "$N"); do
  start=$(date +%s)
  CI=1 .venv/bin/pytest -q -n 6 --dist loadgroup -p no:cacheprovider -rs --durations=25 \
    > "$OUT/run$i.log" 2>&1
  rc=$?
  echo "run $i rc=$rc seconds=$(($(date +%s) - start)) $(tail -1 "$OUT/run$i.log")" \
    "load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary.txt"
done
