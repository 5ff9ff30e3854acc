#!/usr/bin/env bash
# Is a training step with the fast CPU kernels biased? For the bench/loss-curve.sh setting
# (MobileNetV2 0.5, 128x96, batch 32, real augmented batches), compares one step's loss,
# parameter gradients and batch-norm running statistics with the kernels on and with burn's
# f32 ops against burn's ops in f64, at several points of a run trained with the kernels
# (examples/kernel_bias.rs explains the statistics).
# Usage: bench/kernel-bias.sh [data root] [split csv]; POINTS="0 50 150" (training steps at
# which to measure), BATCHES=6 (probe batches per point), SEED, LR, ARCH.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA=${1:-../shared/data/isic2018-task3-200x150}
export SPLIT=${2:-results/fast-kernels-loss/split.csv}
if [ ! -f "$SPLIT" ]; then
    echo "no split file $SPLIT: run bench/loss-curve.sh once, or pass one" >&2
    exit 1
fi
cargo run --quiet --example kernel_bias
