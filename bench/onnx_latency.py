"""Median latency of an ONNX file in onnxruntime at batch 1 (CPU).

usage: onnx_latency.py MODEL.onnx [THREADS] [RUNS]
"""
import sys

import onnxruntime as ort

from ort_peer import median_seconds

model = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 200
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
median = median_seconds(session, 1, 20, runs)
print(f"{model}: onnxruntime {ort.__version__}, {threads} thread(s), batch 1: "
      f"median {1e3 * median:.2f} ms over {runs} runs")
