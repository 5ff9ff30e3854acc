#!/usr/bin/env bash
# Creates bench/.venv with the optional Python peers of the speed benchmark (CPU builds of
# PyTorch + torchvision and TensorFlow) and onnxruntime, which tests/it/export_onnx.rs uses to
# check exported models. Large downloads; not needed for anything else.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --upgrade pip
.venv/bin/pip install numpy onnxruntime || echo "onnxruntime not installed; the export test will skip it"
.venv/bin/pip install torch torchvision || echo "PyTorch not installed; the benchmark will skip it"
.venv/bin/pip install tensorflow-cpu || .venv/bin/pip install tensorflow \
    || echo "TensorFlow not installed; the benchmark will skip it"
