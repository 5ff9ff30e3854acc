"""Where ONNX Runtime's time goes, node by node: runs MODEL.onnx at batch 1 on BENCH_THREADS
threads with ONNX Runtime's profiler on and prints each node's median kernel time (ms) in
graph order, to set beside `examples/block_ab.rs`'s per-step times for the same network
(dermclass's own export, `examples/bench_onnx.rs`). The profiler adds a few microseconds per
node, so the sum of the medians exceeds the unprofiled pass, which is printed first.

usage: ort_profile.py MODEL.onnx [RUNS]
"""
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort


def session(path, profile_prefix=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("BENCH_THREADS", "2"))
    options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def median_ms(s, x, runs):
    for _ in range(20):
        s.run(None, {"image": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        s.run(None, {"image": x})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main():
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    plain = session(path)
    shape = [1] + list(plain.get_inputs()[0].shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    print(f"unprofiled pass: median {median_ms(plain, x, runs):.3f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        profiled = session(path, os.path.join(tmp, "ort"))
        print(f"profiled pass: median {median_ms(profiled, x, runs):.3f} ms")
        events = json.load(open(profiled.end_profiling()))
    times = collections.OrderedDict()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times.setdefault(e["name"][: -len("_kernel_time")], []).append(e["dur"] / 1000)
    total = 0.0
    for name, durations in times.items():
        # Drop the warm-up runs' events.
        m = float(np.median(durations[20:] or durations))
        total += m
        print(f"{name:<40} {m:8.3f}")
    print(f"{'sum of the node medians':<40} {total:8.3f}")


if __name__ == "__main__":
    main()
