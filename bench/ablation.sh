#!/usr/bin/env bash
# Ablation of the accuracy recipe (configs/isic2018.toml): equal short runs of the recipe,
# of the recipe with one part removed or swapped, and of the earlier baseline, for several
# seeds, on the lesion-grouped 30% validation split of the real data. Prints the validation
# balanced accuracy of each run's LAST epoch (no best-epoch picking), mean and spread over
# seeds. Runs that finished are kept and not redone, so the script resumes; seeds go in the
# outer loop, so an interrupted ablation has every variant at its first seeds.
# The post-hoc parts need no training of their own: "no-adjust" (tau 0) and "tta8" (the 8
# dihedral views) score each recipe run's last checkpoint again with `dermclass evaluate`.
# Usage: bench/ablation.sh [data root] [out dir]
#   EPOCHS (default 8), SIZE (default 96), SEEDS (default "1 2"), VARIANTS (default: all
#   but v1-aug and noskip), NICE (default 0: the niceness of the runs).
# The variants remove or swap one part of the recipe, except source-1.5, which adds one.
# results/ablation was measured with recipe v3 (results/ablation/configs/recipe.toml:
# mobilenet_v2:1.0, no source scale); run into a new OUT to ablate the current recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/isic2018-task3-200x150}
out=${2:-results/ablation}
epochs=${EPOCHS:-8}
size=${SIZE:-96}
seeds=${SEEDS:-1 2}
variants=${VARIANTS:-recipe baseline no-adjust tta8 no-ema keras-aug no-sog no-mix cosine la-loss uniform-sampler source-1.5}
cargo build --release --quiet
bin=target/release/dermclass
mkdir -p "$out"

# Each variant's settings: the recipe file with one part removed or swapped.
recipe=configs/isic2018.toml
mkdir -p "$out/configs"
variant_config() {
    local file="$out/configs/$1.toml"
    case $1 in
        recipe | cosine | la-loss | uniform-sampler | v1-aug | noskip | source-1.5 | no-mix) cp "$recipe" "$file" ;;
        no-ema) grep -v '^ema' "$recipe" > "$file" ;;
        no-sog) grep -v '^shades_of_gray' "$recipe" > "$file" ;;
        # The Keras study's augmentation (flip, rotation 30, zoom 0.3, shift 0.3) + vflip, no
        # batch mixing.
        keras-aug) sed '/^\[augment\]/,$d' "$recipe" > "$file"
            printf '[augment]\nvertical_flip = true\n' >> "$file" ;;
        # The earlier reference recipe (README before the recipe): Adam 2e-3 cosine,
        # effective-number class weights, label smoothing 0.1, Keras augmentation + vflip,
        # no adjustment, EMA or colour constancy; same network and input as the others.
        baseline) grep -v -E '^(ema|shades_of_gray|tau|optimizer|weight_decay|schedule|warmup_epochs|label_smoothing|class_weights)' "$recipe" \
                | sed '/^\[augment\]/,$d' > "$file"
            printf 'optimizer = "adam"\nschedule = "cosine"\nwarmup_epochs = 1.0\nlabel_smoothing = 0.1\nclass_weights = "effective"\n[augment]\nvertical_flip = true\n' >> "$file" ;;
        *) echo "unknown variant $1" >&2; exit 2 ;;
    esac
}
flags() {
    case $1 in
        cosine) echo --schedule cosine --warmup-epochs 1 ;;
        la-loss) echo --loss logit-adjusted ;;
        # Mixup and CutMix off (recipe v5 added them; they pay off over long schedules, so
        # short ablation runs understate them).
        no-mix) echo --mixup 0 --cutmix 0 ;;
        # What recipe v2 changed from v1, one at a time: the sampler, and v1's augmentation
        # (free rotation 30 and crops down to 35% of the area).
        uniform-sampler) echo --sampler uniform ;;
        v1-aug) echo --rotation 30 --crop-scale 0.35,1 ;;
        # MobileNetV2 without its identity shortcuts, as dermclass built it until 2026-11-30
        # (recipes v1 and v2 were trained that way).
        noskip) echo --arch mobilenet_v2:1.0:noskip ;;
        # Added to the recipe: augmentation renders each image from a copy 1.5x the input
        # size, so crops keep detail instead of enlarging the reduced image.
        source-1.5) echo --source-scale 1.5 ;;
    esac
}

# "no-adjust" and "tta8" re-score a recipe run; their value is read from this file.
scored() { echo "$out/recipe-s$2/$1.json"; }
score_again() {
    local file
    file=$(scored "$1" "$2")
    [ -f "$file" ] && return
    local run="$out/recipe-s$2" flags
    case $1 in no-adjust) flags="--tau 0" ;; tta8) flags="--tta 8" ;; esac
    # shellcheck disable=SC2086
    "$bin" evaluate --model "$run/last.ckpt" --data "$data" --split-file "$run/split.csv" \
        $flags --json > "$file.part" && mv "$file.part" "$file"
}

for seed in $seeds; do
    for variant in $variants; do
        case $variant in no-adjust | tta8) continue ;; esac
        run="$out/$variant-s$seed"
        if [ -f "$run/report.md" ]; then continue; fi
        resume=""
        if [ -f "$run/last.ckpt" ]; then resume=--resume; fi
        variant_config "$variant"
        config="$out/configs/$variant.toml"
        extra=$(flags "$variant")
        nice -n "${NICE:-0}" "$bin" train --config "$config" --data "$data" --out "$run" \
            --epochs "$epochs" --input "$size" --seed "$seed" --cache "$out/cache-$size" \
            $extra $resume > "$run.log" 2>&1 || { echo "$variant seed $seed failed: see $run.log"; exit 1; }
    done
    for variant in $variants; do
        case $variant in no-adjust | tta8) score_again "$variant" "$seed" ;; esac
    done
done

last_bacc() {
    case $1 in
        no-adjust | tta8) python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["balanced_accuracy"])' "$(scored "$1" "$2")" ;;
        *) tail -n 1 "$out/$1-s$2/metrics.csv" | cut -d, -f5 ;;
    esac
}
printf '| variant | validation BACC, last epoch, per seed | mean | spread (max - min) |\n|---|---|---|---|\n'
for variant in $variants; do
    values=""
    for seed in $seeds; do
        v=$(last_bacc "$variant" "$seed")
        values="$values $v"
    done
    echo "$values" | awk -v name="$variant" '{
        s = 0; lo = 1; hi = 0; list = "";
        for (i = 1; i <= NF; i++) { s += $i; if ($i < lo) lo = $i; if ($i > hi) hi = $i;
            list = list (i > 1 ? ", " : "") sprintf("%.4f", $i) }
        printf "| %s | %s | %.4f | %.4f |\n", name, list, s / NF, hi - lo }'
done
