#!/usr/bin/env bash
# The GPU check in one shot, for a machine with one NVIDIA GPU and PyTorch (CUDA) but possibly no Ray, Optuna,
# pytest or network: what a lent accelerator machine has. Under 8 minutes:
#   1. the checks of tests/test_gpu.py: training on CUDA, an exact resume on CUDA, the file loading and
#      forecasting on a CPU (with pytest when it is installed, else the file's own runner);
#   2. benchmarks/gpu_throughput.py: trials per hour of the default preset's typical trial with 1, 4, 8 and 16
#      trials at once on the GPU, against 2 CPU cores.
#
# What it carries (about 2 MiB, well under the 64 MiB a call may take): the repository's tracked files
# (rnn_core/ needs only torch, numpy and pandas; nothing is installed: PYTHONPATH is the checkout) and the
# data, which lies outside the repository: copy it into the ignored folder benchmarks/.gpu/ first and carry it:
#   mkdir -p benchmarks/.gpu && cp ../shared/data/bike-sharing/hour.csv benchmarks/.gpu/
#   then run `bash benchmarks/gpu_check.sh` there with carry ["benchmarks/.gpu"].
# Results go to $OUT (or ./gpu-check-out): gpu_tests.txt and gpu_throughput.md; record the table in
# benchmarks/RESULTS.md by hand (the machine's copy of the tree does not come back).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export RNN_SEARCH_DATA="${RNN_SEARCH_DATA:-$PWD/benchmarks/.gpu/hour.csv}"
export RNN_SEARCH_TEST_DATA="$RNN_SEARCH_DATA"
export RNN_SEARCH_CACHE="$(mktemp -d)"  # never the machine's own cache
out="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$out"
if [ ! -f "$RNN_SEARCH_DATA" ]; then
  echo "error: no data at $RNN_SEARCH_DATA: copy hour.csv to benchmarks/.gpu/ and carry that folder" >&2
  exit 2
fi
python - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
status=0
if python -c "import pytest" 2>/dev/null; then
  timeout 300 python -m pytest -q -p no:cacheprovider tests/test_gpu.py -m gpu -rs 2>&1 | tee "$out/gpu_tests.txt" || status=1
else
  timeout 300 python tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.txt" || status=1
fi
timeout 240 python benchmarks/gpu_throughput.py --seconds 15 --out "$out/gpu_throughput.md" || status=1
exit $status
