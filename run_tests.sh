#!/usr/bin/env bash
# The test suite: CPU only, no network. Sets up .venv on first use.
# One pytest worker per core (pytest-xdist), each taking the next test as it frees up.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k rda; -n 0 runs them in one process).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
exec python -m pytest -q -n auto --dist worksteal tests "$@"
