#!/usr/bin/env bash
# Train the embedded default model skyeye-tiny from the real rasters in ../shared/data and install
# it into skyeye/bundled/skyeye-tiny (about 1 h on a shared 2-core CPU machine). Stages whose output
# already exists in runs/skyeye-tiny are skipped: delete that folder to start over.
#   scripts/train_skyeye_tiny.sh [SHARED_DATA] [extra finetune.skyeye_tiny options]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${1:-../shared/data}"
shift || true
exec .venv/bin/python -m finetune.skyeye_tiny --recipe finetune/recipes/skyeye-tiny.yaml \
    --shared-data "$SHARED" --work runs/skyeye-tiny --install skyeye/bundled/skyeye-tiny "$@"
