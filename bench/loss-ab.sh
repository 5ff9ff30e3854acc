#!/usr/bin/env bash
# bench/loss-curve.sh's A/B (kernels on and off, same seeds, same batches) run through the
# library's trainer from a debug build (examples/loss_ab.rs; dependencies and kernels are
# optimised in that profile), for more seeds or shorter runs than the release script. A third
# run per seed, "on1t", has the kernels on with one rayon thread, which changes nothing but
# summation orders (the 1x1 and stem weight gradients take one accumulator over the images
# instead of two per-thread partial sums; burn's parallel reductions split differently): how
# far it lands from "on" is the run-to-run noise of a pure rounding change, the yardstick for
# on - off.
# Prints bench/loss-curve.sh's tables (with the paired on - off differences), then per seed
# the last epoch's train loss of the three runs.
# Usage: bench/loss-ab.sh [data root] [out dir]; SEEDS="5 6 7 8 9 10 11 12", EPOCHS=2.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/isic2018-task3-200x150}
out=${2:-results/fast-kernels-loss-ab}
export SEEDS=${SEEDS:-5 6 7 8 9 10 11 12}
export EPOCHS=${EPOCHS:-2}
cargo build --quiet --example loss_ab
bin=${CARGO_TARGET_DIR:-target}/debug/examples/loss_ab
mkdir -p "$out"
if [ ! -f "$out/split.csv" ]; then
    # The split of bench/loss-curve.sh (every 4th training row, every 5th validation row).
    cp results/fast-kernels-loss/split.csv "$out/split.csv"
fi
if [ -z "${SKIP_RUNS:-}" ]; then
    for seed in $SEEDS; do
        for mode in off on on1t; do
            [ -f "$out/$mode-seed$seed/metrics.csv" ] && continue
            rm -rf "${out:?}/$mode-seed$seed"
            threads=$([ $mode = on1t ] && echo 1 || echo "${RAYON_NUM_THREADS:-}")
            RAYON_NUM_THREADS=$threads DERMCLASS_FAST_KERNELS=$([ $mode = off ] && echo 0 || echo 1) \
                "$bin" "$data" "$out/split.csv" "$out/$mode-seed$seed" "$seed" "$EPOCHS" >/dev/null
        done
    done
fi
SKIP_RUNS=1 BIN=unused bench/loss-curve.sh "$data" "$out"
echo "train loss at epoch $EPOCHS: on, on with one thread (on1t), off"
for seed in $SEEDS; do
    loss() { awk -F, -v e="$EPOCHS" '$1 == e { print $2 }' "$out/$1-seed$seed/metrics.csv"; }
    on=$(loss on); on1t=$(loss on1t); off=$(loss off)
    awk -v s="$seed" -v a="$on" -v b="$on1t" -v c="$off" 'BEGIN {
        printf "seed %s | on %.4f | on1t %.4f | off %.4f | on - off %+.4f | on1t - on %+.4f | on1t - off %+.4f\n",
            s, a, b, c, a - c, b - a, b - c }'
done
