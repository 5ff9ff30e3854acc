"""Runs an exported dermclass ONNX file in onnxruntime and compares its outputs with
dermclass's own, for tests/it/export_onnx.rs (which skips when onnxruntime is absent).

usage: onnx_check.py MODEL.onnx INPUT.f32 N,C,H,W LOGITS.f32 PROBS.f32
The .f32 files hold little-endian float32 values in C order. Prints one JSON line with
the largest absolute differences and the runtime's version.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, input_path, shape, logits_path, probs_path = sys.argv[1:6]
    shape = tuple(int(d) for d in shape.split(","))
    x = np.fromfile(input_path, dtype="<f4").reshape(shape)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probabilities"], {"image": x})
    want_logits = np.fromfile(logits_path, dtype="<f4").reshape(logits.shape)
    want_probs = np.fromfile(probs_path, dtype="<f4").reshape(probs.shape)
    meta = session.get_modelmeta().custom_metadata_map
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "logits_max_abs_diff": float(np.max(np.abs(logits - want_logits))),
        "logits_scale": float(max(1.0, np.max(np.abs(want_logits)))),
        "probabilities_max_abs_diff": float(np.max(np.abs(probs - want_probs))),
        "top1_agreement": float(np.mean(probs.argmax(1) == want_probs.argmax(1))),
        "classes": meta.get("classes", ""),
    }))


if __name__ == "__main__":
    main()
