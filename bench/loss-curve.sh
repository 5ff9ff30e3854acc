#!/usr/bin/env bash
# The fast CPU kernels must not change training: the same short real-data run (MobileNetV2
# 0.5 at 128x96, batch 32, Adam 2e-3 cosine, 4 epochs on a fixed quarter of the
# lesion-grouped training split) with the kernels on and off, for several seeds. Training
# amplifies rounding differences the way it amplifies a change of seed, so the yardstick for
# "the same curve" is the spread between seeds. Prints per epoch the train and validation
# loss of each run and the means over seeds.
# Usage: bench/loss-curve.sh [data root] [out dir]; SEEDS="1 2 3 4" (default) picks the seeds,
# SKIP_RUNS=1 only prints the table of the runs already in the out dir.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/isic2018-task3-200x150}
out=${2:-results/fast-kernels-loss}
seeds=${SEEDS:-1 2 3 4}
cargo build --release --quiet
bin=target/release/dermclass
mkdir -p "$out"
if [ -z "${SKIP_RUNS:-}" ]; then
    "$bin" split --data "$data" --seed 1 --out "$out/full-split.csv" >/dev/null
    # Every 4th training row and every 5th validation row: lesions stay on one side.
    awk -F, 'NR == 1 || ($2 == "train" && NR % 4 == 0) || ($2 == "val" && NR % 5 == 0)' \
        "$out/full-split.csv" > "$out/split.csv"
    rm "$out/full-split.csv"
    for seed in $seeds; do
        for mode in on off; do
            rm -rf "${out:?}/$mode-seed$seed"
            DERMCLASS_FAST_KERNELS=$([ $mode = on ] && echo 1 || echo 0) "$bin" train \
                --data "$data" --split "$out/split.csv" --out "$out/$mode-seed$seed" \
                --arch mobilenet_v2:0.5 --input 128x96 --epochs 4 --batch 32 --lr 0.002 \
                --seed "$seed" --workers 1 >/dev/null
        done
    done
fi
for column in "2 train loss" "3 validation loss" "8 epoch seconds"; do
    set -- $column
    field=$1; shift
    echo "$* per epoch, kernels on / off:"
    for seed in $seeds; do printf ' | seed %-13s' "$seed"; done
    printf ' | mean over seeds\n'
    for epoch in 1 2 3 4; do
        printf '%s' "$epoch"
        sum_on=0; sum_off=0; n=0
        for seed in $seeds; do
            on=$(awk -F, -v e="$epoch" -v f="$field" '$1 == e { print $f }' "$out/on-seed$seed/metrics.csv")
            off=$(awk -F, -v e="$epoch" -v f="$field" '$1 == e { print $f }' "$out/off-seed$seed/metrics.csv")
            printf ' | %6.4f / %6.4f' "$on" "$off"
            sum_on=$(echo "$sum_on + $on" | bc -l); sum_off=$(echo "$sum_off + $off" | bc -l); n=$((n + 1))
        done
        printf ' | %6.4f / %6.4f\n' "$(echo "$sum_on / $n" | bc -l)" "$(echo "$sum_off / $n" | bc -l)"
    done
    echo
done
