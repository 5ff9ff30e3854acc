#!/usr/bin/env bash
# Side-by-side speed benchmark on this machine: dermclass (release build) and, when
# bench/.venv exists (bench/setup-peers.sh), PyTorch and TF-Keras, all on the same number of
# threads (BENCH_THREADS, default: all cores). Prints the table and dermclass / best peer.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${BENCH_THREADS:-$(nproc)}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
cargo build --release --quiet
peers=$(mktemp)
trap 'rm -f "$peers"' EXIT
if [ -x bench/.venv/bin/python ]; then
    bench/.venv/bin/python bench/peers.py > "$peers" || true
else
    echo "bench/.venv missing: Python peers skipped (run bench/setup-peers.sh to add them)" >&2
fi
echo "$(date -u +%F) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $threads threads"
target/release/dermclass bench --peers "$peers" "$@"
