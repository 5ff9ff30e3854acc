#!/usr/bin/env bash
# The accuracy recipe end to end, as the shipped model is made: the validation run (the
# lesion-grouped 30% split of SEED), its evaluation (one view, 8 views, the temperature
# fitted on its validation images and the reliability diagram), then the final fit on all
# images and its weights-only copy carrying that temperature. Each step is skipped when its
# output exists and a training run that was cut off is resumed, so rerun the script to
# continue (across sessions too, as long as OUT survives).
# Usage: bench/recipe.sh [OUT] [DATA]
#   CONFIG (default configs/isic2018.toml), SEED (default 1), SHIP (the weights-only file
#   to write, default OUT/final.ckpt; models/NAME.ckpt to ship it), BIN (the dermclass
#   binary; default: build the release one), CACHE (decoded-image cache, default OUT/cache),
#   TEMPERATURE (the validation run's fitted temperature, on record from an earlier run:
#   skips the validation run and its evaluation, and makes only the final fit).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/recipe}
data=${2:-../shared/data/isic2018-task3-200x150}
config=${CONFIG:-configs/isic2018.toml}
seed=${SEED:-1}
ship=${SHIP:-$out/final.ckpt}
cache=${CACHE:-$out/cache}
bin=${BIN:-target/release/dermclass}
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin dermclass; fi
mkdir -p "$out"

# Trains into $1 with the other arguments; a run that has a checkpoint and no report resumes
# with the settings it stored.
train_run() {
    local run=$1
    shift
    [ -f "$run/report.md" ] && return
    local settings=(--config "$config" --seed "$seed" "$@")
    if [ -f "$run/last.ckpt" ]; then settings=(--resume); fi
    echo "train $run ($(date -u +%FT%TZ))"
    "$bin" train --data "$data" --out "$run" --cache "$cache" --budget-minutes 240 \
        "${settings[@]}" >> "$run.log" 2>&1 ||
        { echo "training $run failed: see $run.log" >&2; exit 1; }
}

# Writes `evaluate`'s output on the validation run's own validation images to $1.
evaluate_into() {
    local file=$1
    shift
    [ -f "$file" ] && return
    "$bin" evaluate --model "$valrun" --data "$data" --split-file "$valrun/split.csv" "$@" \
        > "$file.part" && mv "$file.part" "$file"
}

valrun=$out/validation-s$seed
if [ -n "${TEMPERATURE:-}" ]; then
    temperature=(--temperature "$TEMPERATURE")
else
    train_run "$valrun"
    evaluate_into "$valrun/evaluate-tta1.txt"
    evaluate_into "$valrun/evaluate-tta8.txt" --tta 8
    # Last: it stores the temperature in the validation run's best checkpoint.
    evaluate_into "$valrun/evaluate-fit-temperature.txt" --fit-temperature \
        --reliability "$valrun/reliability.png"
    temperature=(--temperature-from "$valrun")
fi

final=$out/final-s$seed
train_run "$final" --val-fraction 0
if [ ! -f "$ship" ]; then
    "$bin" strip --model "$final" "${temperature[@]}" --out "$ship" | tee "$final/strip.txt"
fi
echo "done: final fit $final, weights $ship"
