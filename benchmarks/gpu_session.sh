#!/usr/bin/env bash
# One GPU session, prepared to fit a short device loan (about 8 minutes on an H200):
# the core's tests on the GPU, then the GPU benchmarks (issue 16) and the generation
# benchmark at Stable Diffusion 2.1's size (issue 17). Results go to $OUT (default
# benchmarks/results); each benchmark writes its JSON after every case, so a run cut short
# keeps what it measured. Check it on a CPU first:  QUICK=1 bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # faceaudit from this checkout, installed or not
if [ -n "${QUICK:-}" ]; then
  export JAX_PLATFORMS=cpu
  "$PY" -m pytest -q -p no:cacheprovider -n 0 tests/core/test_frechet.py 2>&1 | tail -3
  "$PY" benchmarks/gpu.py --quick --repeats 3 --out "$OUT/gpu-quick.json" | cut -c1-160
  "$PY" benchmarks/generate.py --model tiny --images 4 --batch-sizes 1,2 --repeats 1 --out "$OUT/generate-quick.json" | cut -c1-160
  exit 0
fi
export JAX_PLATFORMS=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu-device.txt"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -n 0 tests/core -x 2>&1 | tail -5 | tee "$OUT/gpu-core-tests.txt"
timeout 200 "$PY" benchmarks/gpu.py --audit-sizes --out "$OUT/gpu.json" | cut -c1-200
"$PY" -c "import diffusers, transformers" 2>/dev/null || { echo "no diffusers here: generation benchmark skipped"; exit 0; }
timeout 150 "$PY" benchmarks/generate.py --model sd21 --device cuda --dtype float16 --steps 30 --resolution 512 \
  --images 32 --batch-sizes 1,4,8,16 --repeats 3 --out "$OUT/generate-gpu.json" | cut -c1-200
