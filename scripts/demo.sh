#!/usr/bin/env bash
# The whole study on the bundled RAVDESS sample (6 actors, 4 emotions, 168 files) with
# recipes/demo.yaml: set up, then `emodiff study`: prepare, embed, one small generator per
# leave-one-speaker-out fold (never trained on that fold's test or validation actor), sample,
# classify (real, synthetic, real+synthetic, +mixup), quality, report. About 10 minutes on 2 CPU
# cores (docs/report.md). The store is ./demo.h5 (override with EMODIFF_STORE), the generators
# go to runs/demo/, the report to report/. A second run skips every finished step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export EMODIFF_STORE=${EMODIFF_STORE:-demo.h5}
emodiff study --recipe demo "$@"
