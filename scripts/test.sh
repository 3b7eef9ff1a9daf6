#!/usr/bin/env bash
# Set up and run the whole test suite (CI runs exactly this through .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
EMODIFF_EXTRAS=dev,ray bash scripts/setup.sh  # Ray for tests/test_study_executors.py's local cluster
. .venv/bin/activate
python -m ruff check emodiff tests benchmarks
# OpenMP threads that sleep instead of spinning between parallel regions, as the `emodiff` command
# sets them (docs/performance.md): beside any other busy process, spinning threads slowed the suite 5-30x.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" KMP_BLOCKTIME="${KMP_BLOCKTIME:-0}"
# Two processes on two cores (pytest-xdist; EMODIFF_TEST_WORKERS=0 runs in this one): each file's tests stay
# in one worker, so a module's fixtures are built once; tests/conftest.py gives each worker one torch thread
# and orders the files longest first, which --no-loadscope-reorder keeps.
python -m pytest -n "${EMODIFF_TEST_WORKERS:-auto}" --dist loadfile --no-loadscope-reorder "$@"
