#!/usr/bin/env bash
# Side-by-side speed benchmark on this machine: dermclass (release build) and, when
# bench/.venv exists (bench/setup-peers.sh), PyTorch and TF-Keras, plus ONNX Runtime running
# dermclass's own export of the same network (inference only), all on the same number of
# threads (BENCH_THREADS, default: all cores). Prints the table and dermclass / best peer.
# ARCH (default mobilenet_v2:1.0) picks the network; other arguments go to `dermclass bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${BENCH_THREADS:-$(nproc)}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
arch=${ARCH:-mobilenet_v2:1.0}
export ARCH=$arch
cargo build --release --quiet --bin dermclass --example bench_onnx
peers=$(mktemp)
onnx=$(mktemp --suffix=.onnx)
trap 'rm -f "$peers" "$onnx"' EXIT
if [ -x bench/.venv/bin/python ]; then
    bench/.venv/bin/python bench/peers.py > "$peers" || true
    if bench/.venv/bin/python -c "import onnxruntime" 2> /dev/null; then
        target/release/examples/bench_onnx "$onnx" "$arch" 224
        bench/.venv/bin/python bench/ort_peer.py "$onnx" >> "$peers"
    fi
else
    echo "bench/.venv missing: Python peers skipped (run bench/setup-peers.sh to add them)" >&2
fi
echo "$(date -u +%F) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $threads threads"
target/release/dermclass bench --arch "$arch" --peers "$peers" "$@"
