"""Median latency of an ONNX file in onnxruntime at batch 1 (CPU).

usage: onnx_latency.py MODEL.onnx [THREADS] [RUNS]
"""
import sys
import time

import numpy as np
import onnxruntime as ort

model = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 200
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
shape = [1] + [d for d in session.get_inputs()[0].shape[1:]]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
for _ in range(20):
    session.run(None, {"image": x})
times = []
for _ in range(runs):
    start = time.perf_counter()
    session.run(None, {"image": x})
    times.append(time.perf_counter() - start)
print(f"{model}: onnxruntime {ort.__version__}, {threads} thread(s), batch 1: "
      f"median {1e3 * float(np.median(times)):.2f} ms over {runs} runs")
