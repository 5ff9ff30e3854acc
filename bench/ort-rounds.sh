#!/usr/bin/env bash
# Inference against ONNX Runtime in interleaved rounds, for hosts whose speed drifts from
# minute to minute: each round runs ONNX Runtime (bench/ort_peer.py on dermclass's own export
# of the network), then `dermclass bench --inference`, then ONNX Runtime again, and compares
# dermclass with the faster of the two runs around it (ONNX Runtime's batch-1 figure is
# bimodal on some hosts; its slow runs are not held against it). Prints every round and the
# median ratio at batch 1 and 16. Needs bench/.venv with onnxruntime (bench/setup-peers.sh).
# ROUNDS (default 5), ARCH (default mobilenet_v2:1.0), BENCH_THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${BENCH_THREADS:-$(nproc)}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
arch=${ARCH:-mobilenet_v2:1.0}
rounds=${ROUNDS:-5}
if ! bench/.venv/bin/python -c "import onnxruntime" 2> /dev/null; then
    echo "bench/.venv with onnxruntime missing: run bench/setup-peers.sh first" >&2
    exit 1
fi
cargo build --release --quiet --bin dermclass --example bench_onnx
onnx=$(mktemp --suffix=.onnx)
log=$(mktemp)
trap 'rm -f "$onnx" "$log"' EXIT
target/release/examples/bench_onnx "$onnx" "$arch" 224 > /dev/null
ort() { bench/.venv/bin/python bench/ort_peer.py "$onnx"; }
echo "$(date -u +%FT%TZ) $arch on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $threads threads"
before=$(ort)
for _ in $(seq "$rounds"); do
    ours=$(target/release/dermclass bench --arch "$arch" --inference --steps 50 --json)
    after=$(ort)
    echo "[$before, $ours, $after]" >> "$log"
    before=$after
done
# One JSON array per round: ONNX Runtime before, dermclass, ONNX Runtime after.
bench/.venv/bin/python - "$log" << 'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("round | ORT b1 before/after | dermclass b1 | ratio b1 | ORT b16 before/after | dermclass b16 | ratio b16")
ratios = {1: [], 16: []}
for r, (before, ours, after) in enumerate(rows, 1):
    cells = [str(r)]
    for b in (1, 16):
        key = f"infer_224_b{b}"
        ref = max(before[key], after[key])
        ratios[b].append(ours[key] / ref)
        cells += [f"{before[key]:.1f} / {after[key]:.1f}", f"{ours[key]:.1f}", f"{ours[key] / ref:.2f}x"]
    print(" | ".join(cells))
for b in (1, 16):
    rs = sorted(ratios[b])
    print(f"batch {b}: median ratio {statistics.median(rs):.2f}x (range {rs[0]:.2f}-{rs[-1]:.2f}x over {len(rs)} rounds)")
PY
