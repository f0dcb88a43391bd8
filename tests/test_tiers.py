"""Layers point down: the imaging tier of sr_models (image and file IO, built-in photos, errors, the shared options)
imports without PyTorch, as on a deployment machine that runs onnxruntime alone; the evaluation protocol has one
home (sr_models/evaluation/), which the toolkit imports by its new paths; the built-in images are one set of
disjoint lists."""

import importlib
import re
import subprocess
import sys

import pytest

from sr_models import builtin
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
    # The protocol's numpy parts: PSNR/SSIM and reading benchmark folders (the bicubic is imported when LR is made).
    "sr_models.evaluation",
    "sr_models.evaluation.metrics",
    "sr_models.evaluation.samples",
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


# Old import path -> new home; the old modules only re-export (kept for one release).
MOVED = {
    "sr_models.resize": "sr_models.evaluation.resize",
    "sr_models.metrics": "sr_models.evaluation.metrics",
    "sr_models.benchmark": "sr_models.evaluation.samples",
    "sr_models.perceptual": "sr_models.evaluation.perceptual",
}


def test_the_old_import_paths_give_the_same_objects():
    for old, new in MOVED.items():
        shim = importlib.import_module(old)
        assert shim.__all__, old
        for name in shim.__all__:
            home = importlib.import_module(new)
            if not hasattr(home, name):  # sr_models.perceptual also re-exports the weight files' module
                home = importlib.import_module("sr_models.evaluation.perceptual_weights")
            assert getattr(shim, name) is getattr(home, name), (old, name)


def test_nothing_in_the_repository_imports_the_old_paths():
    shims = {REPO / (old.replace(".", "/") + ".py") for old in MOVED}
    pattern = re.compile(rf"^\s*(from|import)\s+({'|'.join(re.escape(old) for old in MOVED)})\b", re.M)
    pattern_from = re.compile(
        rf"^\s*from sr_models import .*\b({'|'.join(old.split('.')[1] for old in MOVED)})\b", re.M
    )
    found = []
    for path in REPO.rglob("*.py"):
        if path in shims or any(part.startswith(".") or part == "venv" for part in path.relative_to(REPO).parts):
            continue
        text = path.read_text(encoding="utf-8")
        if pattern.search(text) or pattern_from.search(text):
            found.append(str(path.relative_to(REPO)))
    assert not found, found


def test_the_built_in_image_lists_are_disjoint_and_installed():
    lists = {name: value for name, value in vars(builtin).items() if name.startswith("BUILTIN_")}
    assert len(lists) >= 5, sorted(lists)  # training, held out, int8 calibration and parity graphics, reporting
    seen = {}
    for name, images in lists.items():
        assert images and len(set(images)) == len(images), name
        for image in images:
            assert image not in seen, f"{image} is in both {seen.get(image)} and {name}"
            seen[image] = name
            assert (builtin.builtin_folder() / image).is_file(), image


def test_an_old_path_patched_reaches_the_code_that_moved(monkeypatch, tmp_path):
    # Old code patched sr_models.perceptual's download and lookup; those now live in two modules, and each old
    # name must still steer the code that uses it, as it did when they shared one module.
    old = importlib.import_module("sr_models.perceptual")
    from sr_models.evaluation import perceptual, perceptual_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # nothing cached there
    fetched = []
    monkeypatch.setattr(old, "_packaged", lambda weight: None)
    monkeypatch.setattr(old, "_download", lambda weight, folder, timeout=20: fetched.append(weight.names[0]))
    with pytest.raises(perceptual_weights.MissingWeightsError):
        perceptual_weights.find_weights(["lpips"], tmp_path)
    assert fetched == [w.names[0] for w in perceptual_weights.WEIGHTS_FOR["lpips"]]

    class Looked(Exception):
        pass

    def lookup(metrics, weights_dir=None, **_):
        raise Looked(metrics)

    original = perceptual.find_weights
    monkeypatch.setattr(old, "find_weights", lookup)  # bound in both new modules: set in both
    assert perceptual.find_weights is lookup and perceptual_weights.find_weights is lookup
    with pytest.raises(Looked):
        perceptual.make_scorer(["psnr", "lpips"])
    monkeypatch.undo()
    assert perceptual.find_weights is original and perceptual_weights.find_weights is original
    assert old.find_weights is original and "_download" in dir(old)

    # a delete through the old path and its undo put the name back where it was deleted from
    monkeypatch.delattr(old, "hub_dir")
    assert not hasattr(perceptual_weights, "hub_dir") and not hasattr(old, "hub_dir")
    monkeypatch.undo()
    assert perceptual_weights.hub_dir is old.hub_dir and callable(old.hub_dir)
    # a patch of the new path is what the old path reads
    monkeypatch.setattr(perceptual_weights, "hub_dir", lookup)
    assert old.hub_dir is lookup


@pytest.mark.parametrize(
    "how", ["import sr_models.metrics as old", "old = importlib.import_module('sr_models.metrics')"]
)
def test_an_old_path_warns_the_importer_and_knows_only_the_moved_names(how):
    # Python's default filters show a DeprecationWarning only when it is attributed to __main__: it must name the
    # importing line, not the shim or importlib.
    code = f"import importlib\n{how}\nprint(old.psnr.__module__)\nold.no_such_name\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.strip() == "sr_models.evaluation.metrics"
    warning = next(line for line in done.stderr.splitlines() if "DeprecationWarning" in line)
    assert warning.startswith("<string>:2:"), warning
    assert "sr_models.metrics moved to sr_models.evaluation.metrics" in warning
    assert "module 'sr_models.metrics' has no attribute 'no_such_name'" in done.stderr
