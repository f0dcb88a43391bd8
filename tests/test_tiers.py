"""Layers point down: the imaging tier of sr_models (image and file IO, built-in photos, errors, the shared options)
imports without PyTorch, as on a deployment machine that runs onnxruntime alone."""

import subprocess
import sys

from tests.conftest import REPO

TORCH_FREE = [
    "sr_models",
    "sr_models.errors",
    "sr_models.files",
    "sr_models.images",
    "sr_models.image_memory",
    "sr_models.builtin",
    "sr_models.starting",
    "sr_models.cli",
]


def test_the_imaging_tier_imports_with_torch_blocked():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"
        f"import importlib\nfor name in {TORCH_FREE!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' and sys.modules[m]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_torch_import_in_the_tier_would_be_caught():
    code = "import sys\nsys.modules['torch'] = None\nimport sr_models.registry\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "import of torch halted" in done.stderr  # the check above can fail
