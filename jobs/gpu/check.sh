#!/usr/bin/env bash
# The prepared GPU check, one command on a GPU machine: what the device is, `workbench bench gpu`
# (every area, under a time budget), then the GPU tests. Everything lands in OUT_DIR.
#
#   jobs/gpu/check.sh OUT_DIR [BUDGET_S]      # from the repository root; BUDGET_S default 420
#
# Uses the machine's python3 (which must hold torch); .device/site (jobs/gpu/prepare.sh) supplies
# mup, submitit and h5netcdf when the image lacks them.
set -uo pipefail
out=${1:?usage: jobs/gpu/check.sh OUT_DIR [BUDGET_S]}
budget=${2:-420}
cd "$(dirname "$0")/../.."
mkdir -p "$out"
export PYTHONPATH="$PWD:$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}"
export WORKBENCH_BENCH_FIGURES="$out"
py=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  date -u +%Y-%m-%dT%H:%M:%SZ
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
timeout $((${budget%.*} + 90)) "$py" -m workbench.cli bench gpu --budget "$budget" --out "$out/bench_gpu.json" \
  > "$out/bench_gpu.txt" 2>&1
echo "bench gpu: exit $?"; cat "$out/bench_gpu.txt"
timeout 240 "$py" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -o addopts="" > "$out/test_gpu.txt" 2>&1
echo "gpu tests: exit $?"; tail -n 15 "$out/test_gpu.txt"
