#!/usr/bin/env bash
# The real comparison of the tricks (issue "Results table"): every family and MobileNetV1's
# width sweep, trained alike with the accuracy recipe (configs/isic2018.toml) at 128x128 for
# 20 epochs on the lesion-grouped 30% split of the real data, cheapest rows first. `compare`
# skips finished architectures and resumes an interrupted one, so rerun this to continue.
# The input size, the source scale and batch mixing are pinned to what the committed rows
# were trained with (recipe v3: 128x128 rendered from the 128x128 copy, no mixing), since
# the recipe moved on.
# The mobile rows come first, then the Keras study's kind of rows (MobileNetV1 1.0 with batch
# size and learning rate varied around the recipe's 32 and 0.002, in OUT-vary), then the two
# dense rows (the plain twin and ResNet-50, about 3 hours each on 2 cores).
# Usage: bench/compare.sh [OUT] [DATA]   (BIN: the dermclass binary; keep one for the whole
# comparison, since the time columns depend on it; CACHE: the decoded-image cache folder.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/compare-128}
data=${2:-../shared/data/isic2018-task3-200x150}
bin=${BIN:-target/release/dermclass}
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin dermclass; fi
mobile=mobilenet_v2:1.0,shufflenet_v2:1.0,mobilenet_v1:1.0,mobilenet_v1:0.75,mobilenet_v1:0.5,mobilenet_v1:0.25,shufflenet_v1:g3
cache=${CACHE:-runs/cache-128}
pinned=(--input 128 --source-scale 1 --mixup 0 --cutmix 0)
"$bin" compare --config configs/isic2018.toml --data "$data" --out "$out" \
    --arches "$mobile" --epochs 20 "${pinned[@]}" --cache "$cache"
"$bin" compare --config configs/isic2018.toml --data "$data" --out "$out-vary" \
    --arches mobilenet_v1:1.0 --vary batch=16,64 --vary lr=0.001,0.004 --epochs 20 "${pinned[@]}" --cache "$cache"
"$bin" compare --config configs/isic2018.toml --data "$data" --out "$out" \
    --arches "$mobile,plain_v1:1.0,resnet50" --epochs 20 "${pinned[@]}" --cache "$cache"
