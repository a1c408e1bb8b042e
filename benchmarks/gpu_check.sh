#!/usr/bin/env bash
# The GPU figures of benchmarks/throughput.py: every model eager (fp32, amp+channels_last) with the data-loading
# table, then each model also under torch.compile (one run per model, each with its own time limit).
# Needs a CUDA machine with fmkit's environment (.venv/bin/python, or PYTHON=...); installs nothing. Writes
# gpu.txt, throughput_cuda.txt, throughput_cuda.json and throughput_cuda_compile.txt into $OUT (default
# outputs/gpu_check, git-ignored); its scratch (synthetic faces, compile caches) goes under
# outputs/gpu_check/scratch and is removed at the end: nothing outside the repository.
# Limits (s): EAGER_S=240, COMPILE_S=100 per model (about 14 min in all); MODELS="a b" compiles only those.
#   OUT=/some/dir bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
OUT="${OUT:-outputs/gpu_check}"
SCRATCH="$PWD/outputs/gpu_check/scratch"
mkdir -p "$OUT" "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT
export TMPDIR="$SCRATCH" TORCHINDUCTOR_CACHE_DIR="$SCRATCH/inductor" TRITON_CACHE_DIR="$SCRATCH/triton"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
timeout "${EAGER_S:-240}" "$PY" benchmarks/throughput.py --device cuda --json "$OUT/throughput_cuda.json" 2>&1 \
    | tee "$OUT/throughput_cuda.txt"
: >"$OUT/throughput_cuda_compile.txt"
for m in ${MODELS:-$("$PY" -c "from fmkit.models import list_models; print(*list_models())")}; do
    timeout "${COMPILE_S:-100}" "$PY" benchmarks/throughput.py --device cuda --compile --no-loading --models "$m" 2>&1 \
        | grep -v "^W[0-9]" | tee -a "$OUT/throughput_cuda_compile.txt"
    echo "== $m: exit ${PIPESTATUS[0]} (124: over COMPILE_S)" | tee -a "$OUT/throughput_cuda_compile.txt"
done
