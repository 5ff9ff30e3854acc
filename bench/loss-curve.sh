#!/usr/bin/env bash
# The fast CPU kernels must not change training: the same short real-data run (MobileNetV2
# 0.5 at 128x96, 4 epochs on a fixed quarter of the lesion-grouped training split) with the
# kernels on and off, plus the kernels on with another seed as the run-to-run noise yardstick.
# Prints the three loss curves side by side. Usage: bench/loss-curve.sh [data root] [out dir]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/isic2018-task3-200x150}
out=${2:-results/fast-kernels-loss}
cargo build --release --quiet
bin=target/release/dermclass
mkdir -p "$out"
"$bin" split --data "$data" --seed 1 --out "$out/full-split.csv" >/dev/null
# Every 4th training row and every 5th validation row: lesions stay on one side.
awk -F, 'NR == 1 || ($2 == "train" && NR % 4 == 0) || ($2 == "val" && NR % 5 == 0)' \
    "$out/full-split.csv" > "$out/split.csv"
rm "$out/full-split.csv"
run() { # name, kernels (1/0), seed
    rm -rf "${out:?}/$1"
    DERMCLASS_FAST_KERNELS=$2 "$bin" train --data "$data" --split "$out/split.csv" \
        --out "$out/$1" --arch mobilenet_v2:0.5 --input 128x96 --epochs 4 --batch 32 \
        --lr 0.002 --seed "$3" --workers 1 >/dev/null
}
run kernels-on 1 1
run kernels-off 0 1
run kernels-on-seed2 1 2
echo "epoch | train loss: on / off / on seed 2 | val loss: on / off / on seed 2 | val BACC: on / off / on seed 2 | epoch s: on / off"
paste -d, "$out/kernels-on/metrics.csv" "$out/kernels-off/metrics.csv" "$out/kernels-on-seed2/metrics.csv" |
    awk -F, 'NR > 1 { printf "%s | %.4f / %.4f / %.4f | %.4f / %.4f / %.4f | %.4f / %.4f / %.4f | %.0f / %.0f\n",
        $1, $2, $11, $20, $3, $12, $21, $5, $14, $23, $8, $17 }'
