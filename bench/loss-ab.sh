#!/usr/bin/env bash
# bench/loss-curve.sh's A/B (kernels on and off, same seeds, same batches) run through the
# library's trainer from a debug build (examples/loss_ab.rs; dependencies and kernels are
# optimised in that profile), for more seeds or shorter runs than the release script.
# Prints bench/loss-curve.sh's tables, including the paired on - off differences.
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
for seed in $SEEDS; do
    for mode in off on; do
        [ -f "$out/$mode-seed$seed/metrics.csv" ] && continue
        rm -rf "${out:?}/$mode-seed$seed"
        DERMCLASS_FAST_KERNELS=$([ $mode = on ] && echo 1 || echo 0) "$bin" \
            "$data" "$out/split.csv" "$out/$mode-seed$seed" "$seed" "$EPOCHS" >/dev/null
    done
done
SKIP_RUNS=1 BIN=unused bench/loss-curve.sh "$data" "$out"
