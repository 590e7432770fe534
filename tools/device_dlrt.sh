#!/usr/bin/env bash
# GPU run of suites/dlrt_lenet5.yaml (full MNIST carried in .devdata/), five runs in parallel on one GPU.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps .wheels/*.whl 2>&1 | tail -2
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
timeout 420 harness run suites/dlrt_lenet5.yaml --results "$OUT/dlrt_lenet5" --data-root .devdata --device cuda \
    --workers 5 --threads 2 2>&1 | grep -v "━" | tail -20
harness report "$OUT/dlrt_lenet5" --format md --no-plots > "$OUT/report.md" 2>&1
tail -40 "$OUT/report.md"
