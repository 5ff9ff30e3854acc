"""ONNX Runtime as an inference peer: runs dermclass's own export of the benchmarked model
(examples/bench_onnx.rs) at batch 1 and 16 on BENCH_THREADS threads and prints one
JSON line in the format `dermclass bench --peers` reads (median images/s, as `bench`).

usage: ort_peer.py MODEL.onnx
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def median_seconds(session, batch, warmup, steps):
    """Median seconds of `steps` runs of `session` on a random batch, after `warmup` runs."""
    shape = [batch] + list(session.get_inputs()[0].shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {"image": x})
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        session.run(None, {"image": x})
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def rate(session, batch, warmup, steps):
    return batch / median_seconds(session, batch, warmup, steps)


def main():
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
    report = {
        "framework": f"onnxruntime {ort.__version__}",
        "train_224_b16": None,
        "train_128_b32": None,
        "infer_224_b1": rate(session, 1, 20, 200),
        "infer_224_b16": rate(session, 16, 3, 20),
        "peak_rss_mb": None,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
