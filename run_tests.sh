#!/usr/bin/env bash
# The test suite: CPU only, no network. Sets up .venv on first use.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k rda).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
exec python -m pytest -q tests "$@"
