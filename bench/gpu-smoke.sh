#!/usr/bin/env bash
# The GPU path, exercised without a GPU: builds dermclass with the `wgpu` feature and, on
# Mesa's lavapipe (software Vulkan; Debian's mesa-vulkan-drivers), trains one short epoch
# of a small model with `--device wgpu`, resumes it for a second epoch, then predicts with
# the checkpoint on wgpu and on flex and checks that the probabilities agree.
# Not in CI: the wgpu build alone takes many minutes on 2 cores.
# Usage: bench/gpu-smoke.sh [work dir]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
if ! vulkaninfo --summary 2> /dev/null | grep -q deviceName; then
    echo "no Vulkan device: apt-get install mesa-vulkan-drivers vulkan-tools" >&2
    exit 2
fi
vulkaninfo --summary 2> /dev/null | grep -m1 deviceName
cargo build --release --quiet --features wgpu --target-dir target/wgpu --bin dermclass
bin=target/wgpu/release/dermclass
rm -rf "$work/run"
"$bin" synth --out "$work/data" --per-class 16 --size 48x48
common=(--data "$work/data" --out "$work/run" --arch tiny_cnn:0.5 --input 48 --batch 16 --device wgpu)
# A budget that runs out after the first epoch stops the run there; the resume (which
# may change the budget, not the epochs) finishes the second.
"$bin" train "${common[@]}" --epochs 2 --budget-minutes 0.001
test "$(tail -n +2 "$work/run/metrics.csv" | wc -l)" -eq 1 || { echo "the budget did not stop the run after epoch 1" >&2; exit 1; }
"$bin" train --out "$work/run" --resume --budget-minutes 60
test "$(tail -n +2 "$work/run/metrics.csv" | wc -l)" -eq 2 || { echo "the resumed run does not have 2 epochs" >&2; exit 1; }
"$bin" predict --model "$work/run" --input "$work/data" --subset training --out "$work/wgpu.csv" --device wgpu
"$bin" predict --model "$work/run" --input "$work/data" --subset training --out "$work/flex.csv" --device cpu
# Same images, same order: every probability within 1e-3.
paste -d, "$work/wgpu.csv" "$work/flex.csv" | awk -F, 'NR > 1 {
    half = NF / 2
    for (i = 2; i <= half; i++) { d = $i - $(i + half); if (d < 0) d = -d; if (d > worst) worst = d }
    rows++ }
    END { printf "%d images, largest probability difference wgpu vs flex: %.2e\n", rows, worst
          exit (rows > 0 && worst <= 1e-3) ? 0 : 1 }'
