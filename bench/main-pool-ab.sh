#!/usr/bin/env bash
# Training speed A/B: `dermclass bench` with the main thread as worker 0 of rayon's pool (the
# default for training commands) and without (DERMCLASS_MAIN_IN_POOL=0), interleaved, two
# rounds, on 2 threads. Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin dermclass
for round in 1 2; do
  for a in mobilenet_v2:1.0 mobilenet_v1:1.0 shufflenet_v2:1.0 shufflenet_v1:g3; do
    for setting in 0 1; do
      r=$(DERMCLASS_MAIN_IN_POOL=$setting RAYON_NUM_THREADS=2 target/release/dermclass bench --arch "$a" --json)
      echo "round $round $a main_in_pool=$setting $r"
    done
  done
done
