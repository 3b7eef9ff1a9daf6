#!/usr/bin/env bash
# Set up and run the whole test suite (CI runs exactly this through .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m ruff check emodiff tests benchmarks
python -m pytest "$@"
