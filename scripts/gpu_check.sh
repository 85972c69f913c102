#!/usr/bin/env bash
# The GPU check (README.md "GPU check"; bench/gpu_check.py): the paper's training step on one NVIDIA H100/H200,
# rejax against PyTorch, XLA against cuDNN attention, packed against padded batches, and the decoder's bf16
# parity with transformers, as one markdown table (stdout, OUT/gpu_check.md, OUT/gpu_check.json).
#
#   bash scripts/gpu_check.sh [--cpu] [--budget SECONDS] [--out DIR]
#
# Needs jax (CUDA), flax, optax, transformers, torch, safetensors and numpy; not grain, array-record,
# ml-collections, tensorflow-datasets or faiss, and no network. The repository is used in place (PYTHONPATH),
# not installed. --cpu (or GPU_CHECK_CPU=1): the same code at tiny sizes on the CPU, in under a minute.
# PYTHON picks the interpreter (default: .venv/bin/python if there is one, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m bench.gpu_check "$@"
