#!/usr/bin/env bash
# Exports the embedded default checkpoint to icnseg/assets/export/ (prm.onnx, icn.onnx,
# manifest.json) with the parity check, so `icnseg demo` runs without torch. --dynamic-k: the
# PRM backward runs only the image's peaks on ONNX Runtime (TensorRT users export their own).
# Re-run whenever icnseg/assets/default.safetensors changes (a test compares the two).
set -euo pipefail
cd "$(dirname "$0")/.."
icnseg export default --out icnseg/assets/export --force --dynamic-k
