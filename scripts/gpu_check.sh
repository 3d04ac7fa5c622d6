#!/usr/bin/env bash
# The GPU acceptance check (what it runs: experiments/gpu_check.py). On a CUDA machine, no network:
#   DATA_ROOT=DIR scripts/gpu_check.sh OUT            # DIR holds cifar-10-batches-py (the subset will do)
#   DATA_ROOT=DIR scripts/gpu_check.sh OUT --dry-run  # every step on the CPU with tiny sizes
# Writes OUT/summary.json, OUT/gpu_check.log and each step's JSON; prints a summary table.
# Python: $PYTHON if set, else a python3 that already has torch, numpy, pyyaml and pytest (a GPU
# machine's own CUDA build), else .venv (made from requirements.txt, which needs the package index).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if python3 -c "import torch, numpy, yaml, pytest" 2>/dev/null; then
    PYTHON=python3
  else
    source scripts/env.sh
    PYTHON=python
  fi
fi
exec "$PYTHON" -m experiments.gpu_check "$@"
