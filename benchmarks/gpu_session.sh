#!/usr/bin/env bash
# Everything a lent GPU machine checks, in one call: the CUDA tests, the kernel throughput and
# the preset costs; logs and benchmark outputs go to $OUT (default /tmp/gpu-session).
#
# Prepare on a machine that has ../shared/data and pip (the GPU machine may have neither):
#   mkdir -p .devcarry && python benchmarks/gpu_cost.py --write-cases .devcarry/gpu_cases.npz
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .devcarry diffusers==0.42.1 importlib_metadata==8.7.0
# then run this script there from the repository root with .devcarry beside it. It uses the
# machine's own torch, Triton and numba; the engine comes from Logic/ on PYTHONPATH.
# Each step has its own time limit, and one that fails does not stop the others; STEPS picks
# steps (default "tests kernels cost").
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/*.whl
export PYTHONPATH="$PWD/Logic:/tmp/site"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import sys, torch, triton, numba; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__, numba.__version__)"
} 2>&1 | tee "$OUT/env.txt"

STEPS=${STEPS:-tests kernels cost}
if [[ " $STEPS " == *" tests "* ]]; then
timeout "${TEST_LIMIT:-170}" python3 -m pytest -q -p no:cacheprovider -o addopts="-ra" \
    Testing/test_cuda_paths.py Testing/test_kernels_triton.py Testing/test_kernels_selection.py \
    Testing/test_kernels_numba.py::test_cuda_tensors_are_refused >"$OUT/tests.log" 2>&1
echo "tests: exit $?"; tail -n 25 "$OUT/tests.log"
fi
if [[ " $STEPS " == *" kernels "* ]]; then

timeout "${KERNEL_LIMIT:-90}" python3 benchmarks/kernels_bench.py --devices cuda >"$OUT/kernels.log" 2>&1
echo "kernels_bench: exit $?"; cp benchmarks/kernels_bench.json benchmarks/kernels_bench.md "$OUT/" 2>/dev/null
tail -n 5 "$OUT/kernels.log"
fi
if [[ " $STEPS " == *" cost "* ]]; then

timeout "${COST_LIMIT:-300}" python3 benchmarks/gpu_cost.py --cases .devcarry/gpu_cases.npz \
    --budget "${COST_BUDGET:-200}" ${COST_RUNS:+--runs $COST_RUNS} >"$OUT/cost.log" 2>&1
echo "gpu_cost: exit $?"; cp benchmarks/gpu_cost.json benchmarks/gpu_cost.md "$OUT/" 2>/dev/null
tail -n 22 "$OUT/cost.log"
fi
