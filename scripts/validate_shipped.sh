#!/usr/bin/env bash
# Validate the shipped calo emulators against 100k fresh reference showers each and record the
# result in their model cards (card.json "validation", MODEL_CARD.md; report in models/<name>/report/).
#
#   scripts/validate_shipped.sh                  # all three
#   N_REF=20000 MODELS="calo-eplus" scripts/validate_shipped.sh
#
# Reference seeds 9001-9003 are never used for training (the recipe uses 101-103).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
N_REF=${N_REF:-100000}
WORKERS=${WORKERS:-2}
MODELS=${MODELS:-"calo-eplus calo-gamma calo-piplus"}
REF_DIR=${REF_DIR:-data/ref}
mkdir -p "$REF_DIR"
cli() { "$PYTHON" -m pipelines.cli "$@"; }
for name in $MODELS; do
    case "$name" in
        calo-eplus) particle=e+; seed=9001 ;;
        calo-gamma) particle=gamma; seed=9002 ;;
        calo-piplus) particle=pi+; seed=9003 ;;
        *) echo "unknown model $name" >&2; exit 2 ;;
    esac
    ref="$REF_DIR/${name#calo-}-ref.h5"
    [[ -s "$ref" ]] || cli simulate calo --particle "$particle" --n "$N_REF" --energy 1:100 --seed "$seed" \
        --workers "$WORKERS" --out "$ref"
    # exit status 1 means "a threshold failed": the report is still written and recorded
    cli validate --model "$name" --reference "$ref" --out "models/$name/report" --device cpu || [[ $? == 1 ]]
    "$PYTHON" -c "import sys; from emulator.checkpoint import record_validation; \
print(record_validation(sys.argv[1], sys.argv[1] + '/report/metrics.json')['passed'])" "models/$name"
done
