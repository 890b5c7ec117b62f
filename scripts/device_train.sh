#!/usr/bin/env bash
# Run scripts/train_calo.sh on the lent GPU machine and pack the three model directories into $OUT.
#
# From the session (device tool `run`, carry [".whl"] for the POT wheel, timeout 600):
#   bash scripts/device_train.sh
# then here:  for f in /work/.device/<N>/calo-*.tgz; do tar xzf "$f" -C /work/main; done
# Every variable of train_calo.sh passes through (STEPS, BATCH, TRAIN_SECONDS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?run this on the device machine, where \$OUT is set}
if compgen -G ".whl/pot*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/pot*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore::SyntaxWarning PYTHON=python3
export RUN_ROOT=${RUN_ROOT:-/tmp/runs} DATA_DIR=${DATA_DIR:-/tmp/data} MODELS_DIR=${MODELS_DIR:-models}
status=0
scripts/train_calo.sh 2>&1 | tee "$OUT/recipe.log" || status=$?
tar czf "$OUT/training-logs.tgz" --exclude='checkpoints' -C "$RUN_ROOT" . || true
for m in "$MODELS_DIR"/calo-*; do
    [[ -f "$m/generator.safetensors" ]] && tar czf "$OUT/$(basename "$m").tgz" "$m"
done
ls -la "$OUT"
exit $status
