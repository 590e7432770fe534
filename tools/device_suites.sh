#!/usr/bin/env bash
# GPU run of the biggest grids side by side on one GPU, data carried in .devdata/ (MNIST/raw,
# FashionMNIST/raw). Each argument is SUITE:GRIDS:WORKERS (GRIDS comma-separated, empty for all), e.g.
#   LIMIT=470 bash tools/device_suites.sh mnist::10 fashion_mnist:cnn32:4
# Whatever is unfinished after LIMIT seconds goes back to pending; it resumes on any machine with
#   harness run suites/<suite>.yaml --results <the returned store>   (harness merge joins two stores)
set -uo pipefail
OUT=${OUT:-/tmp/out}
LIMIT=${LIMIT:-470}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps .wheels/*.whl 2>&1 | tail -2
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
suites=()
for spec in "$@"; do
    IFS=: read -r suite grids workers <<< "$spec"
    suites+=("$suite")
    timeout -k 5 "$LIMIT" harness run "suites/$suite.yaml" ${grids:+--grids "$grids"} --results "$OUT/$suite" \
        --data-root .devdata --device cuda --workers "${workers:-4}" --threads 1 > "$OUT/$suite.log" 2>&1 &
done
wait
pkill -9 -f multiprocessing.spawn
sleep 2
python3 - "$OUT" "${suites[@]}" <<'PY'
import sqlite3
import sys
from pathlib import Path

from harness.store import Store

for name in sys.argv[2:]:
    p = Path(sys.argv[1]) / name
    if p.exists():
        print(name, "released", len(Store(p).release_stale()), "unfinished runs")
        sqlite3.connect(p / "results.sqlite").execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
for suite in "${suites[@]}"; do
    grep -v "━" "$OUT/$suite.log" | tail -2
    harness status "$OUT/$suite" 2>&1 | tail -6
done
