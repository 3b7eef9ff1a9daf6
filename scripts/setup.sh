#!/usr/bin/env bash
# Set up ./.venv on a fresh machine: the CPU build of torch, pinned so that pip never pulls
# the multi-GB CUDA wheels, then emodiff itself (editable) with its test tools.
# Idempotent: a second run only checks that everything is installed. EMODIFF_EXTRAS names the extras
# (default dev; scripts/test.sh adds ray, for the tests that start a local Ray cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[${EMODIFF_EXTRAS:-dev}]"
