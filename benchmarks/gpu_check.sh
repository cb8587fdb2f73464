#!/usr/bin/env bash
# The simulator's CUDA path on one GPU, in under 5 minutes: bit-exact against the CPU
# engines (the CUDA tests, then benchmarks/gpu_check.py on the benchmark's networks)
# and its speed table (benchmarks/results/gpu_check.{json,md}).
#
#   benchmarks/gpu_check.sh [--quick]       # PYTHON=... to choose the interpreter
#
# Needs torch with CUDA; a C compiler to build the CPU engine it is compared with (else
# only the reference loop is); lava-dl for PilotNet-LIF's file (make env installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PYEOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device: nothing to check")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PYEOF
if ! "$PY" -c "import rssnn_deploy._fused_cuba" 2>/dev/null; then
    echo "building the C extension (CPU engine) in place"
    "$PY" setup.py build_ext --inplace >/dev/null || echo "no C extension: CPU reference only"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m "not lava" \
    tests/test_fastsim_paths.py tests/test_sim.py -k "cuda"
timeout 240 "$PY" benchmarks/gpu_check.py "$@"
