#!/usr/bin/env bash
# The fast CPU kernels must not change training: the same short real-data run (MobileNetV2
# 0.5 at 128x96, batch 32, Adam 2e-3 cosine, 4 epochs on a fixed quarter of the
# lesion-grouped training split) with the kernels on and off, for several seeds. Training
# amplifies rounding differences the way it amplifies a change of seed, so the yardstick for
# "the same curve" is the spread between seeds. Prints per epoch the train and validation
# loss of each run and the means over seeds.
# Usage: bench/loss-curve.sh [data root] [out dir]; SEEDS="1 2 3 4" (default) picks the seeds,
# SKIP_RUNS=1 only prints the table of the runs already in the out dir, EPOCHS=4 (default)
# sets the run length, BIN=path runs that dermclass binary instead of building the release one,
# ARCH=name trains another model (default mobilenet_v2:0.5).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/isic2018-task3-200x150}
out=${2:-results/fast-kernels-loss}
seeds=${SEEDS:-1 2 3 4}
epochs=${EPOCHS:-4}
arch=${ARCH:-mobilenet_v2:0.5}
bin=${BIN:-target/release/dermclass}
[ -n "${BIN:-}" ] || cargo build --release --quiet
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
                --arch "$arch" --input 128x96 --epochs "$epochs" --batch 32 --lr 0.002 \
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
    for epoch in $(seq 1 "$epochs"); do
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
# Paired differences (on - off) per epoch over the seeds: mean, standard deviation, t and a
# 95% confidence interval of the mean (Student's t quantile for n - 1 degrees of freedom).
for column in "2 train loss" "3 validation loss"; do
    set -- $column
    field=$1; shift
    echo "$* on - off, paired over seeds:"
    for epoch in $(seq 1 "$epochs"); do
        for seed in $seeds; do
            on=$(awk -F, -v e="$epoch" -v f="$field" '$1 == e { print $f }' "$out/on-seed$seed/metrics.csv")
            off=$(awk -F, -v e="$epoch" -v f="$field" '$1 == e { print $f }' "$out/off-seed$seed/metrics.csv")
            echo "$on $off"
        done | awk -v epoch="$epoch" '
            BEGIN { split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131", q, " ") }
            { d[NR] = $1 - $2; s += d[NR]; if (d[NR] > 0) pos++ }
            END {
                n = NR; m = s / n
                for (i = 1; i <= n; i++) v += (d[i] - m) ^ 2
                sd = sqrt(v / (n - 1)); se = sd / sqrt(n); t = (n - 1 <= 15) ? q[n - 1] : 1.96
                printf "%s | mean %+.4f, sd %.4f, t = %.2f (%d df), 95%% CI [%+.4f, %+.4f], on higher in %d of %d\n",
                    epoch, m, sd, m / se, n - 1, m - t * se, m + t * se, pos, n
            }'
    done
    echo
done
