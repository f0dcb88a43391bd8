#!/usr/bin/env bash
# One prepared check of a GPU machine, at most 8 minutes: prints one table, writes gpu_check.json into $OUT when
# set, else into the current folder. What it measures: bench/gpu_check.py. docs/gpu-and-data-store.md has the figures.
#
#   bench/gpu_check.sh            # on the GPU machine
#   bench/gpu_check.sh --cpu      # everything shrunk, CPU only: checks the script (tests/test_gpu_check.py runs it)
#   PYTHON=/path/to/venv/bin/python bench/gpu_check.sh   # that interpreter, venv activated or not (default python3)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

# Checked first, so that no minutes are spent before finding it missing. A machine without network gets it as
# wheels: on a networked machine with the same Python, `pip download datasets -d wheels/`; copy wheels/ over; then
# `pip install --no-index --find-links wheels datasets`.
for module in torch accelerate datasets onnx onnxruntime safetensors einops; do
    if ! "$python" -c "import $module" 2>/dev/null; then
        echo "error: Python module '$module' is not installed for $python. Without network, bring it as wheels: on a machine" \
             "with network and the same Python version, 'pip download $module -d wheels/'; copy wheels/ here; then" \
             "'pip install --no-index --find-links wheels $module'" >&2
        exit 2
    fi
done

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
# 470 s for the work (the script stops starting new sections at --budget-s 450) and a hard stop before 8 minutes.
exec timeout --kill-after=10 470 "$python" "$repo/bench/gpu_check.py" "$@"
