#!/usr/bin/env bash
# The CUDA check run on a lent GPU machine (see the closing notes): installs the carried wheels, trains a
# GPU grid of every method, times the harness loop against a hand loop on the GPU, and leaves results in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps .wheels/*.whl 2>&1 | tail -2
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name())"
harness list methods 2>&1 | tee "$OUT/methods.txt"
timeout 300 harness run tools/gpu_suite.yaml --results "$OUT/gpu" --device cuda 2>&1 | tail -30 | tee "$OUT/run.txt"
harness report "$OUT/gpu" --format md --no-plots > "$OUT/report.md" 2>&1
timeout 200 python3 benchmarks/epoch_overhead.py --device cuda --reps 3 --vgg-batches 200 2>&1 | tee "$OUT/overhead.txt"
