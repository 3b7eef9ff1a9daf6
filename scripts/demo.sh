#!/usr/bin/env bash
# The demo on the bundled RAVDESS sample (6 actors, 4 emotions, 168 files):
# set up, prepare, embed, inspect. The store is ./demo.h5 (override with EMODIFF_STORE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export EMODIFF_STORE=${EMODIFF_STORE:-demo.h5}
SAMPLE=$(python -c "import emodiff.data as d; print(d.ravdess_sample())")
emodiff prepare ravdess "$SAMPLE"
emodiff embed --corpus ravdess
emodiff inspect
