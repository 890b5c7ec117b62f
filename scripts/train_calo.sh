#!/usr/bin/env bash
# Train the calo emulators (models/calo-eplus, calo-gamma, calo-piplus) with one command.
#
#   scripts/train_calo.sh                      # all three particles, recipe v1.7.0 (defaults below), one GPU
#   OLD="ENERGY_LOSS=moments BALANCE_BINS=0 G_OUTPUT_NOISE=0 G_OUTPUT_NOISE_MAX=0 PREPROCESSING=log1p_fraction"
#                                              # the recipes before v1.3.0, as prefix of the lines below
#   env $OLD GP_SPACE=input HEAD_HIDDEN= COND_EMBED=0 EMA_DECAY=0.999 MODEL_VERSION=1.1.0 scripts/train_calo.sh  # v1.1.0
#   env $OLD EMA_DECAY=0.999 MODEL_VERSION=1.2.0 scripts/train_calo.sh                                            # v1.2.0
#   env $OLD DEVICE=cpu BATCH=256 VAL_EVERY=1000 STEPS=6000 TRAIN_SECONDS=0 WORKERS=2 PARTICLES=e+ EMA_DECAY=0.999 \
#       MODEL_VERSION=1.2.0 scripts/train_calo.sh
#   env $OLD DEVICE=cpu BATCH=256 VAL_EVERY=1000 STEPS=6500 TRAIN_SECONDS=0 WORKERS=2 PARTICLES=e+ EMA_DECAY=0.99 \
#       MODEL_VERSION=1.2.1 EXTRA_TRAIN_ARGS="--resume" scripts/train_calo.sh
#                                              # calo-eplus 1.2.1 as shipped: 6000 steps (50 min on a 2-core CPU),
#                                              # then 500 more with the shorter EMA (4 min)
#   env $OLD DEVICE=cpu BATCH=256 VAL_EVERY=1000 STEPS=4000 TRAIN_SECONDS=0 WORKERS=2 PARTICLES=gamma EMA_DECAY=0.999 \
#       MODEL_VERSION=1.2.0 scripts/train_calo.sh
#                                              # calo-gamma 1.2.0 as shipped (best: step 3000): 32 min on a 2-core CPU
#                                              # (PARTICLES=pi+: calo-piplus 1.2.0 as shipped, best: step 4000)
#                                              # the shipped 1.3.0 weights continue these runs with --resume and
#                                              # --set energy_loss=crps|moments+crps --set balance_bins=10 (stages and
#                                              # steps in each card's training.history)
#                                              # the 1.4.0 weights continue those with the critic's six new
#                                              # features (log E_ratio, log sigma^2 per layer) through
#                                              # EXTRA_TRAIN_ARGS="--init-from runs/<run>/checkpoints/step-N" (zero
#                                              # weight for the new inputs at the start; stages in training.history)
#                                              # the 1.5.0 weights continue those 2000 steps with the generator's
#                                              # learned per-output noise (G_OUTPUT_NOISE; EXTRA_TRAIN_ARGS=
#                                              # "--init-from runs/<run>/checkpoints/step-N"; noise added at sigma 0.1:
#                                              # G_OUTPUT_NOISE=0.1 G_OUTPUT_NOISE_MAX=0 PREPROCESSING=log1p_fraction)
#   DEVICE=cpu BATCH=256 VAL_EVERY=500 STEPS=8000 TRAIN_SECONDS=0 WORKERS=2 PARTICLES=e+ scripts/train_calo.sh
#                                              # calo-eplus 1.6.0 as shipped, from scratch (best: step 7000,
#                                              # 85 min on a 2-core CPU)
#                                              # (the code since 1.7.0 gives the critic 84 more inputs, the
#                                              # cell-energy spectrum per layer: 1.6.0 exactly needs the commit
#                                              # before it). calo-eplus 1.7.0 continues that run from step 7000:
#   .venv/bin/python -m pipelines.cli train calo --config runs/calo-eplus/config.json \
#       --init-from runs/calo-eplus/checkpoints/step-00007000 --run-dir runs/calo-eplus-1.7 \
#       --out runs/calo-eplus-1.7/models/calo-eplus --steps 10000      # best: step 8500 (15 min more)
#   STEPS=30000 BATCH=1024 scripts/train_calo.sh
#   PARTICLES="pi+" STEPS=2000 scripts/train_calo.sh
#
# 1. simulates the training data per particle (N_TRAIN showers, uniform 1-100 GeV, seed per particle)
#    with the reference simulator on WORKERS processes, one particle after the other;
# 2. trains the three models at the same time on one GPU (CONCURRENT=0 trains them one by one);
# 3. each training exports its best EMA generator (by quick validation) to MODELS_DIR/calo-<name>.
# Logs: RUN_ROOT/logs/<step>-<particle>.log; metrics and loss curves: RUN_ROOT/calo-<name>/.
# Sized for a 16-core machine with one H100: ~1 min of simulation and TRAIN_MINUTES of training.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
N_TRAIN=${N_TRAIN:-250000}        # training showers per particle
WORKERS=${WORKERS:-16}            # simulation processes
STEPS=${STEPS:-100000}            # generator updates per model (upper bound; see TRAIN_SECONDS)
TRAIN_SECONDS=${TRAIN_SECONDS:-390}  # wall-clock budget per model; 0 = run exactly STEPS (bit-reproducible)
BATCH=${BATCH:-1024}              # batch size
ENERGY_WEIGHT=${ENERGY_WEIGHT:-1.0}  # energy-consistency term weight
ENERGY_SCALE=${ENERGY_SCALE:-relative}  # its units: relative (to each bin's spread) or absolute
ENERGY_LOSS=${ENERGY_LOSS:-moments+crps}  # v1.3.0: per-bin mean and spread (moments, all recipes up to
                                  # v1.2.1: blind below ~6 GeV at batch 256) plus a per-shower proper score (crps).
                                  # Measured on CPU continuations: crps alone gave gamma 7 of 10 spread bins within
                                  # 5 % but e+ 9-17 % wide at 60-100 GeV; moments+crps gives better shapes (FPD)
                                  # while the spread drifts narrow with more steps (gamma 2000 more: -5..-28 %)
BALANCE_BINS=${BALANCE_BINS:-10}  # half of each batch spread evenly over 10 bins of log E (v1.3.0); 0: uniform
GP_SPACE=${GP_SPACE:-joint}       # gradient penalty on (samples, critic features); the shipped v1.1.0 used "input"
HEAD_HIDDEN=${HEAD_HIDDEN:-128,128}  # separate response head (empty: from the main output layer, as v1.1.0)
COND_EMBED=${COND_EMBED:-32}      # learned energy embedding width (+ FiLM in the generator); 0: raw log10(E)/2
EMA_DECAY=${EMA_DECAY:-0.99}      # generator EMA; 0.999 (v1.1.0, v1.2.0) averaged over drifting weights and
                                  # made the e+ resolution 4-21 points narrower than the raw generator's
VAL_EVERY=${VAL_EVERY:-2000}      # quick validation / best-model export interval
SEED=${SEED:-1}                   # base seed: data seed is SEED*100+k, training seed is SEED
PARTICLES=${PARTICLES:-"e+ gamma pi+"}
CONCURRENT=${CONCURRENT:-1}       # 1: train all particles at once on the one GPU
DEVICE=${DEVICE:-auto}
DATA_DIR=${DATA_DIR:-data/calo}
RUN_ROOT=${RUN_ROOT:-runs}
MODELS_DIR=${MODELS_DIR:-models}
MODEL_VERSION=${MODEL_VERSION:-1.7.0}  # version recorded in the model cards
G_HIDDEN=${G_HIDDEN:-512,512,512}  # generator widths (1.7 MFLOP per shower)
G_OUTPUT_NOISE=${G_OUTPUT_NOISE:-0.3}  # v1.6.0 (v1.5.0: 0.1): initial sigma of the learned noise added to each output before
                                  # the ReLU, so switched-off cells still get gradients; 0: none (up to v1.4.0)
G_OUTPUT_NOISE_MAX=${G_OUTPUT_NOISE_MAX:-1.0}  # v1.6.0: bound on that noise's sigma (> G_OUTPUT_NOISE); 0: unbounded (v1.5).
                                  # Unbounded in log1p_threshold units it grew to 2.5 and widened the showers
PREPROCESSING=${PREPROCESSING:-log1p_threshold}  # cell units: fractions of E_inc (log1p_fraction, up to v1.5) or the readout
                                  # threshold (log1p_threshold, v1.6.0: a lit cell at x >= ln 2 at every energy; see
                                  # emulator/domains/calo.py)
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}   # e.g. "--set lr_g=2e-4 --set g_hidden=512,512"

mkdir -p "$DATA_DIR" "$RUN_ROOT/logs" "$MODELS_DIR"
cli() { "$PYTHON" -m pipelines.cli "$@"; }
model_name() { case "$1" in e+) echo calo-eplus ;; gamma) echo calo-gamma ;; pi+) echo calo-piplus ;; *) echo "unknown particle $1" >&2; exit 2 ;; esac; }
data_seed() { case "$1" in e+) echo $((SEED * 100 + 1)) ;; gamma) echo $((SEED * 100 + 2)) ;; pi+) echo $((SEED * 100 + 3)) ;; esac; }

echo "[$(date -u +%T)] python: $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())')"
t0=$(date +%s)
for p in $PARTICLES; do
    name=$(model_name "$p")
    data="$DATA_DIR/${name#calo-}-train.h5"
    if [[ -s "$data" ]]; then
        echo "[$(date -u +%T)] $data exists, not re-simulating"
        continue
    fi
    echo "[$(date -u +%T)] simulating $N_TRAIN $p showers -> $data"
    cli simulate calo --particle "$p" --n "$N_TRAIN" --energy 1:100 --seed "$(data_seed "$p")" \
        --workers "$WORKERS" --out "$data" >"$RUN_ROOT/logs/simulate-$name.log" 2>&1 \
        || { echo "simulation of $p failed; see $RUN_ROOT/logs/simulate-$name.log" >&2; tail -20 "$RUN_ROOT/logs/simulate-$name.log" >&2; exit 1; }
    tail -1 "$RUN_ROOT/logs/simulate-$name.log"
done
echo "[$(date -u +%T)] simulation done in $(( $(date +%s) - t0 )) s"

train_one() {
    local p=$1 name data
    name=$(model_name "$p")
    data="$DATA_DIR/${name#calo-}-train.h5"
    # shellcheck disable=SC2086
    cli train calo --particle "$p" --data "$data" --out "$MODELS_DIR/$name" --run-dir "$RUN_ROOT/$name" \
        --steps "$STEPS" --batch-size "$BATCH" --energy-weight "$ENERGY_WEIGHT" --set energy_scale="$ENERGY_SCALE" --set g_hidden="$G_HIDDEN" --set g_output_noise="$G_OUTPUT_NOISE" --set g_output_noise_max="$G_OUTPUT_NOISE_MAX" --set version="$MODEL_VERSION" --set gp_space="$GP_SPACE" --set g_head_hidden="$HEAD_HIDDEN" --set cond_embed="$COND_EMBED" --set ema_decay="$EMA_DECAY" --set energy_loss="$ENERGY_LOSS" --set balance_bins="$BALANCE_BINS" --set preprocessing="$PREPROCESSING" --seed "$SEED" --device "$DEVICE" \
        --set val_every="$VAL_EVERY" --set checkpoint_every="$VAL_EVERY" --set time_limit_s="$TRAIN_SECONDS" --set log_every=100 --no-progress \
        $EXTRA_TRAIN_ARGS >"$RUN_ROOT/logs/train-$name.log" 2>&1
}

t1=$(date +%s)
declare -A pids=()
status=0
for p in $PARTICLES; do
    name=$(model_name "$p")
    echo "[$(date -u +%T)] training $name ($STEPS steps, batch $BATCH) -> $MODELS_DIR/$name, log $RUN_ROOT/logs/train-$name.log"
    if [[ "$CONCURRENT" == 1 ]]; then
        train_one "$p" & pids[$name]=$!
    else
        train_one "$p" || { echo "training $name failed" >&2; tail -30 "$RUN_ROOT/logs/train-$name.log" >&2; status=1; }
    fi
done
for name in "${!pids[@]}"; do
    if ! wait "${pids[$name]}"; then
        echo "training $name failed; last lines of $RUN_ROOT/logs/train-$name.log:" >&2
        tail -30 "$RUN_ROOT/logs/train-$name.log" >&2
        status=1
    fi
done
echo "[$(date -u +%T)] training done in $(( $(date +%s) - t1 )) s (total $(( $(date +%s) - t0 )) s)"
for p in $PARTICLES; do
    name=$(model_name "$p")
    tail -1 "$RUN_ROOT/logs/train-$name.log" || true
done
exit $status
