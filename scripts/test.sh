#!/usr/bin/env bash
# Set up and run the whole test suite (CI runs exactly this through .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m ruff check emodiff tests benchmarks
# OpenMP threads that sleep instead of spinning between parallel regions, as the `emodiff` command
# sets them (docs/performance.md): beside any other busy process, spinning threads slowed the suite 5-30x.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" KMP_BLOCKTIME="${KMP_BLOCKTIME:-0}"
python -m pytest "$@"
