#!/usr/bin/env bash
# Creates bench/.venv with the optional Python peers of the speed benchmark (CPU builds of
# PyTorch + torchvision and TensorFlow). Large downloads; not needed for anything else.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --upgrade pip
.venv/bin/pip install torch torchvision || echo "PyTorch not installed; the benchmark will skip it"
.venv/bin/pip install tensorflow-cpu || .venv/bin/pip install tensorflow \
    || echo "TensorFlow not installed; the benchmark will skip it"
