#!/usr/bin/env bash
# The demo on the bundled RAVDESS sample (6 actors, 4 emotions, 168 files): set up, prepare,
# embed, train the demo generator (minutes on 2 CPU cores), sample 64 segments, inspect.
# The store is ./demo.h5 (override with EMODIFF_STORE); the run goes to runs/demo/.
# A second run finds each step done and skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export EMODIFF_STORE=${EMODIFF_STORE:-demo.h5}
SAMPLE=$(python -c "import emodiff.data as d; print(d.ravdess_sample())")
emodiff prepare ravdess "$SAMPLE"
emodiff embed --corpus ravdess
if ls runs/demo/ckpt-*.pt >/dev/null 2>&1; then
  emodiff train --recipe demo --out runs/demo --resume   # continues, or returns at once if finished
else
  emodiff train --recipe demo --out runs/demo
fi
emodiff sample --n 64 --run runs/demo --name demo
emodiff inspect
