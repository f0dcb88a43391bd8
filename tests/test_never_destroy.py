"""Issue 19, rule 1 (never destroy: sr_models.files.claim_output) and rule 4 for writers (sr_models.files.
writer_command), through every command that writes: export/upscale.py, export/to_onnx.py, train/evaluate.py --json,
python -m train.data prepare (--store too), and the run folder's own files."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from bench.faults.harness import group_alive  # the fault suite's: one home
from export.convert import export_fp32
from export.to_onnx import main as export_main
from export.upscale import main as upscale_main
from sr_models import create_model, save_weights
from sr_models.files import OutputError, OutputLock, claim_output, open_append
from sr_models.images import save_rgb
from train.config import ConfigError
from train.data.subimages import main as prepare_main
from train.evaluate import main as evaluate_main
from train.run_folder import MARKER, RunFolderLock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(weights, onnx, benchmark folder with HR/ and LR_bicubic/X2/, folder of photos) shared by the tests."""
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = create_model("pan", scale=2, channels=8, upsample_channels=8, num_blocks=1).eval()
    weights, onnx_path = root / "tiny.safetensors", root / "tiny.onnx"
    save_weights(model, weights)
    export_fp32(model, onnx_path)
    photos = root / "photos"
    for seed in range(3):
        save_rgb(photos / f"p{seed}.png", np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    return weights, onnx_path, photos


def code(command, *argv):
    """Run a command's main in this process: (exit code, the message it exited with)."""
    try:
        command([str(a) for a in argv])
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1, str(exit.code)
    return 0, ""


def snapshot(*paths):
    """Every file under `paths` (links as links) -> its bytes or link target: what must not change."""
    found = {}
    for path in paths:
        for entry in [Path(path), *(Path(path).rglob("*") if Path(path).is_dir() else [])]:
            if entry.is_symlink():
                found[entry] = ("link", os.readlink(entry))
            elif entry.is_file():
                found[entry] = entry.read_bytes()
    return found


def commands(tiny, tmp_path):
    """name -> (main, argv for an output at `out`): each writer of the toolkit, run on the tiny fixtures."""
    weights, onnx_path, photos = tiny
    cache = str(tmp_path / "hf-cache")
    return {
        "upscale": lambda out, source=photos / "p0.png": (upscale_main, [onnx_path, source, out, "--device", "cpu"]),
        "evaluate": lambda out, hr=photos: (
            evaluate_main,
            ["--weights", weights, "--hr", hr, "--json", out, "--device", "cpu"],
        ),
        "to_onnx": lambda out, parity=photos: (
            export_main,
            ["--weights", weights, "--output", out, "--parity-data", parity],
        ),
        "prepare": lambda out, dataset=photos: (
            prepare_main,
            ["prepare", "--dataset", dataset, "--output", out, "--scale", "2", "--store", "--cache-dir", cache],
        ),
    }


def run(tiny, tmp_path, name, out, *extra, **where):
    main, argv = commands(tiny, tmp_path)[name](out, **where)
    return code(main, *argv, *extra)


# ---- an output never replaces an input -------------------------------------------------------------------


def test_no_output_is_an_input_by_any_spelling_or_link_even_with_overwrite(tiny, tmp_path):
    weights, onnx_path, photos = tiny
    before = snapshot(photos, weights, onnx_path)
    os.link(photos / "p1.png", tmp_path / "hard.png")
    os.symlink(photos / "p1.png", tmp_path / "soft.png")
    os.link(weights, tmp_path / "weights-link.onnx")
    cases = [  # (command, output, where its inputs are)
        ("upscale", photos / "p0.png", {}),  # the input itself
        ("upscale", Path(f"{photos}/../{photos.name}/p0.png"), {}),  # another spelling
        ("upscale", tmp_path / "hard.png", {"source": photos / "p1.png"}),  # a hard link to the input
        ("upscale", photos / "p1.png", {"source": tmp_path / "hard.png"}),
        ("upscale", photos, {"source": photos}),  # the input folder as the output folder
        ("upscale", photos / "x2", {"source": photos}),  # inside it
        ("upscale", photos.parent, {"source": photos}),  # holding it
        ("evaluate", photos / "p1.png", {}),  # the example: a benchmark image replaced by the report
        ("evaluate", tmp_path / "hard.png", {}),  # a hard link to a benchmark image
        ("evaluate", tmp_path / "soft.png", {}),  # a symbolic link to one
        ("evaluate", photos / "report.json", {}),  # inside the benchmark folder
        ("evaluate", weights, {}),  # the weights
        ("to_onnx", tmp_path / "weights-link.onnx", {}),  # a hard link to the weights
        ("to_onnx", photos / "model.onnx", {}),  # inside --parity-data
        ("prepare", photos, {}),  # the data set itself
        ("prepare", photos / "prepared", {}),  # inside it
        ("prepare", photos.parent, {}),  # holding it (replacing it would delete the data set)
        ("prepare", tmp_path / "soft-folder", {}),  # a link to the data set
    ]
    os.symlink(photos, tmp_path / "soft-folder")
    for name, out, where in cases:
        status, message = run(tiny, tmp_path, name, out, "--overwrite", **where)
        assert status == 1 and "input" in message and str(out) in message, (name, out, message)
        assert message.count("\n") == 0 and message.startswith("error: ")
    assert snapshot(photos, weights, onnx_path) == before


# ---- --overwrite replaces only what this toolkit wrote ----------------------------------------------------


def foreign(kind, path, tiny):
    """A file or folder of the user's at `path`, of the kind the command writes."""
    if kind == "upscale":
        Image.new("RGB", (8, 8), "red").save(path)  # a real PNG, without our mark
    elif kind == "evaluate":
        path.write_text(json.dumps({"model": "the user's notes", "scale": 2}) + "\n")
    elif kind == "to_onnx":
        model = onnx.load(str(tiny[1]))
        model.producer_name = "pytorch"  # exported by someone else
        onnx.save(model, str(path))
    else:
        path.mkdir()
        (path / "thesis.tex").write_text("years of work\n")


SUFFIX = {"upscale": ".png", "evaluate": ".json", "to_onnx": ".onnx", "prepare": ""}


@pytest.mark.parametrize("name", ["upscale", "evaluate", "to_onnx", "prepare"])
def test_overwrite_replaces_only_what_this_toolkit_wrote(tiny, tmp_path, name):
    out = tmp_path / f"out{SUFFIX[name]}"
    foreign(name, out, tiny)
    before = snapshot(out)
    for extra in ([], ["--overwrite"]):
        status, message = run(tiny, tmp_path, name, out, *extra)
        assert status == 1 and f"{out}: already exists and was not written by this toolkit" in message, message
        assert "pass --overwrite" not in message  # the refusal never suggests destroying it
    assert snapshot(out) == before
    ours = tmp_path / f"ours{SUFFIX[name]}"
    assert run(tiny, tmp_path, name, ours) == (0, "")
    status, message = run(tiny, tmp_path, name, ours)  # ours, but not released: --overwrite is named
    assert status == 1 and "already exists; pass --overwrite" in message
    assert run(tiny, tmp_path, name, ours, "--overwrite") == (0, "")
    if name == "prepare":  # a folder of ours into which the user put a file of their own is theirs too
        (ours / "notes.txt").write_text("mine\n")
        status, message = run(tiny, tmp_path, name, ours, "--overwrite")
        assert status == 1 and "not written by this toolkit" in message and "notes.txt" in message
        assert (ours / "notes.txt").read_text() == "mine\n"


def test_overwrite_replaces_ours_only_with_the_same_kind_of_file(tiny, tmp_path):
    """--json m.onnx --overwrite: m.onnx is ours, but a model, not a report; a report named like an image the same."""
    model, report, image = tmp_path / "m.onnx", tmp_path / "r.json", tmp_path / "up.png"
    assert run(tiny, tmp_path, "to_onnx", model) == (0, "")
    assert run(tiny, tmp_path, "evaluate", report) == (0, "")
    assert run(tiny, tmp_path, "upscale", image) == (0, "")
    for name, out in [("evaluate", model), ("evaluate", image)]:  # to_onnx and upscale refuse a report's suffix
        before = snapshot(out)
        status, message = run(tiny, tmp_path, name, out, "--overwrite")
        assert status == 1 and f"{out}: already exists and was not written by this toolkit" in message, message
        assert snapshot(out) == before


def test_every_image_format_is_marked_except_bmp(tmp_path):
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    for suffix in (".png", ".jpg", ".jpeg", ".tif", ".webp"):
        save_rgb(tmp_path / f"a{suffix}", image)
        claim_output(tmp_path / f"a{suffix}", overwrite=True, lock=False)  # ours: replaceable
    save_rgb(tmp_path / "a.bmp", image)
    with pytest.raises(OutputError, match="a.bmp: already exists and was not written by this toolkit"):
        claim_output(tmp_path / "a.bmp", overwrite=True, lock=False)


# ---- nothing is written through a symbolic link ---------------------------------------------------------


@pytest.mark.parametrize("name", ["upscale", "evaluate", "to_onnx", "prepare"])
def test_an_output_that_is_a_symbolic_link_is_refused(tiny, tmp_path, name):
    target = tmp_path / f"users{SUFFIX[name]}"
    foreign(name, target, tiny)
    link = tmp_path / f"out{SUFFIX[name]}"
    link.symlink_to(target)
    before = snapshot(target, link)
    status, message = run(tiny, tmp_path, name, link, "--overwrite")
    assert status == 1 and f"{link}: is a symbolic link" in message
    assert snapshot(target, link) == before


def test_the_run_lock_and_log_are_never_written_through_a_link(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("the user's file\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / MARKER).symlink_to(users)  # the example: it was truncated to the trainer's pid
    with pytest.raises(ConfigError, match="is a symbolic link"):
        RunFolderLock(run_dir, new_run=True)
    (run_dir / "log.jsonl").symlink_to(users)
    with pytest.raises(OutputError, match="log.jsonl: cannot write"):
        open_append(run_dir / "log.jsonl")
    assert users.read_text() == "the user's file\n"


@pytest.mark.parametrize("planted", ["samples", "checkpoints/step_00000010", "best.safetensors"])
def test_a_link_anywhere_inside_a_run_folder_is_refused_before_anything_is_written(tmp_path, planted):
    users = tmp_path / "users"
    users.mkdir()
    (users / "keep.txt").write_text("the user's file\n")
    run_dir = tmp_path / "run"
    (run_dir / planted).parent.mkdir(parents=True)
    (run_dir / planted).symlink_to(users)  # writes or pruning there would land in the user's folder
    before = snapshot(users, run_dir)
    with pytest.raises(ConfigError, match=f"{run_dir / planted}: is a symbolic link inside the run folder"):
        RunFolderLock(run_dir, new_run=False)
    assert snapshot(users, run_dir) == before


@pytest.mark.parametrize("where", ["beside", "folder", "run"])
def test_a_users_file_under_our_lock_files_name_is_refused_and_kept(tmp_path, where):
    """A file of the user's that happens to bear a lock file's name is neither truncated to our pid nor removed."""
    out = tmp_path / ("z.png" if where == "beside" else "out")
    lock_file = {
        "beside": tmp_path / ".z.png.sr-toolkit.lock",
        "folder": out / ".sr-toolkit.lock",
        "run": out / MARKER,
    }[where]

    def take():
        if where == "run":
            RunFolderLock(out, new_run=True).release()
        else:
            claim_output(out, kind="folder" if where == "folder" else "file")
            OutputLock.release_all()

    lock_file.parent.mkdir(exist_ok=True)
    lock_file.write_text("the user's notes\n")
    before = snapshot(tmp_path)
    name = "the run lock's name" if where == "run" else "this toolkit's lock file name"
    with pytest.raises((ConfigError, OutputError), match=f"{lock_file}: is {name}, but holds something else"):
        take()
    assert snapshot(tmp_path) == before
    lock_file.unlink()
    os.mkfifo(lock_file)  # not a regular file: refused too, and nothing blocks on it
    with pytest.raises((ConfigError, OutputError), match=f"{lock_file}: is {name}, but is not a regular file"):
        take()
    lock_file.unlink()
    lock_file.mkdir()  # a folder of the user's: said to be one, and kept with what is in it
    (lock_file / "keep.txt").write_text("mine\n")
    with pytest.raises((ConfigError, OutputError), match=f"{lock_file}: is {name}, but is a folder; it is left"):
        take()
    assert (lock_file / "keep.txt").read_text() == "mine\n"
    shutil.rmtree(lock_file)
    lock_file.write_text("12345\n")  # left by a holder that was killed: ours, taken over and removed at the end
    take()
    assert lock_file.exists() == (where == "run")


# ---- two commands never write one output at once -------------------------------------------------------


HOLD = (
    "import sys, time; from sr_models.files import claim_output; claim_output(sys.argv[1], kind=sys.argv[2]); "
    "print('held', flush=True); time.sleep(120)"
)


@pytest.mark.parametrize("name", ["upscale", "upscale-folder", "evaluate", "to_onnx", "prepare"])
def test_a_second_command_into_one_output_is_refused_naming_the_pid(tiny, tmp_path, name):
    _, _, photos = tiny
    out = tmp_path / ("folder" if name == "upscale-folder" else f"out{SUFFIX[name]}")
    kind = {"upscale-folder": "folder", "prepare": "tree"}.get(name, "file")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out), kind],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        where = {"source": photos} if name == "upscale-folder" else {}
        status, message = run(tiny, tmp_path, name.split("-")[0], out, "--overwrite", **where)
        assert status == 1 and f"{out}: being written by another command" in message
        assert f"pid {holder.pid}" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    assert run(tiny, tmp_path, name.split("-")[0], out, **where) == (0, "")  # the kernel dropped the lock
    hidden = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    hidden += [p.name for p in out.iterdir() if p.name.startswith(".")] if out.is_dir() else []
    assert hidden in ([], [".sr-toolkit-output.json"]), hidden  # the lock file goes with the command


@pytest.mark.parametrize(
    "held, name",
    [
        ("folder", "upscale"),
        ("folder", "evaluate"),
        ("folder", "to_onnx"),
        ("file", "upscale-folder"),
        ("other file", "upscale-folder"),
    ],
)
def test_a_folder_writer_and_a_lone_writer_into_it_exclude_each_other(tiny, tmp_path, held, name):
    """A folder upscale holds its folder; a lone output holds its own file. Each looks at the other's lock: a single
    image upscaled (or a report, an export) into a folder being filled, or a folder upscale over a file being
    written, is refused in one line naming the holder, and the holder's files are untouched."""
    _, _, photos = tiny
    folder = tmp_path / "upscaled"
    lone = folder / ("p0.png" if name.startswith("upscale") else f"out{SUFFIX[name]}")
    if held == "other file":  # a lone output of another name (a report, say): the folder is still being written
        lone = folder / "report.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD,
            str(folder if held == "folder" else lone),
            "folder" if held == "folder" else "file",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(folder)
        if name == "upscale-folder":
            status, message = run(tiny, tmp_path, "upscale", folder, "--overwrite", source=photos)
            refused = f"{folder}: {lone.name} in it is being written"
        else:
            status, message = run(tiny, tmp_path, name, lone, "--overwrite")
            refused = f"{lone}: its folder {folder} is being written"
        assert status == 1 and refused in message and f"pid {holder.pid}" in message and "\n" not in message
        assert snapshot(folder) == before and not lone.exists()
    finally:
        holder.kill()
        holder.wait()
    where = {"source": photos} if name == "upscale-folder" else {}
    assert run(tiny, tmp_path, name.split("-")[0], folder if where else lone, **where) == (0, "")  # once it is gone


# ---- writers leave nothing partial: signals, errors, a full disk, an earlier SIGKILL ----------------------

SLOW = {  # what to make slow, once the writer has begun its partial output
    "upscale": "import PIL.Image as m; f = m.Image.save\n"
    "def slow(self, fp, *a, **k):\n    f(self, fp, *a, **k); hold()\nm.Image.save = slow",
    "to_onnx": "import export.to_onnx as m; f = m.check_parity\n"
    "def slow(*a, **k):\n    hold(); return f(*a, **k)\nm.check_parity = slow",
    "prepare": "import train.data.store as m; f = m.image_digest\n"
    "def slow(a):\n    hold(); return f(a)\nm.image_digest = slow",
    "evaluate": "import train.evaluate as m; f = m.score\n"
    "def slow(*a, **k):\n    hold(); return f(*a, **k)\nm.score = slow",
}
MAINS = {
    "upscale": "export.upscale",
    "to_onnx": "export.to_onnx",
    "prepare": "train.data.subimages",
    "evaluate": "train.evaluate",
}


def slow_writer(name, argv):
    """A subprocess running the command, which says `writing` and waits once its partial output exists."""
    script = (
        "import sys, time\ndef hold():\n    print('writing', flush=True); time.sleep(120)\n"
        + SLOW[name]
        + f"\nfrom {MAINS[name]} import main\nmain(sys.argv[1:])\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, argv)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"},
        text=True,
    )


SIGNAL_CASES = [(name, signal.SIGTERM) for name in ("upscale", "to_onnx", "prepare", "evaluate")] + [
    (name, signum) for name in ("upscale", "prepare") for signum in (signal.SIGINT, signal.SIGHUP)
]


@pytest.mark.parametrize("name, signum", SIGNAL_CASES)
def test_a_signal_removes_the_partial_output_and_exits_128_plus_n(tiny, tmp_path, name, signum):
    out = tmp_path / "out" / f"out{SUFFIX[name]}"
    _, argv = commands(tiny, tmp_path)[name](out)
    process = slow_writer(name, argv)
    assert process.stdout.readline().strip() == "writing"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), stderr
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no partial, no lock file, no new folder


def test_a_killed_writers_leftovers_are_removed_by_the_next_run_and_nothing_else(tiny, tmp_path):
    out = tmp_path / "prepared.store"
    _, argv = commands(tiny, tmp_path)["prepare"](out)
    process = slow_writer("prepare", argv)
    assert process.stdout.readline().strip() == "writing"
    process.kill()  # SIGKILL: no clean-up can run
    process.wait()
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".prepared.store.")]
    assert left, "the killed writer left nothing to clean up: the test proves nothing"
    # A user's hidden files of the same shape (a dated backup folder, a partial download) lack our tag: kept.
    users = {
        tmp_path / name: b"mine"
        for name in (
            ".prepared.store.notes",
            "prepared.store.123.partial",
            ".other.123.partial",
            ".prepared.store.2024.old",
            ".prepared.store.12.partial",
            ".out.png.12.partial",
            ".out.onnx.999.partial.txt",
        )
    }
    backup = tmp_path / ".prepared.store.2023.old"  # a whole folder, as a user's backup would be
    backup.mkdir()
    (backup / "my_only_copy.png").write_bytes(b"precious")
    for path, data in users.items():
        path.write_bytes(data)
    assert run(tiny, tmp_path, "prepare", out) == (0, "")
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".prepared.store."))
    assert kept == [
        ".prepared.store.12.partial",
        ".prepared.store.2023.old",
        ".prepared.store.2024.old",
        ".prepared.store.notes",
    ]
    assert snapshot(*users) == users and (backup / "my_only_copy.png").read_bytes() == b"precious"
    for name, leftover in (
        ("upscale", ".out.png.4242.sr-toolkit-partial"),
        ("evaluate", ".out.json.4242.sr-toolkit-partial"),
        ("to_onnx", "..out.onnx.4242.sr-toolkit-partial.4242.sr-toolkit-scratch-x1y2"),
    ):
        (tmp_path / leftover).mkdir() if "scratch" in leftover else (tmp_path / leftover).write_bytes(b"half")
        assert run(tiny, tmp_path, name, tmp_path / f"out{SUFFIX[name]}") == (0, "")
        assert not (tmp_path / leftover).exists()
    assert snapshot(*users) == users


@pytest.mark.parametrize("name", ["upscale", "to_onnx", "prepare"])
def test_a_full_disk_is_one_line_and_leaves_nothing(tiny, tmp_path, name, monkeypatch):
    import export.to_onnx
    import train.data.store

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    target = {
        "upscale": (Image.Image, "save"),
        "to_onnx": (export.to_onnx, "check_parity"),
        "prepare": (train.data.store, "image_digest"),
    }[name]
    monkeypatch.setattr(*target, full)
    out = tmp_path / "out" / f"out{SUFFIX[name]}"
    status, message = run(tiny, tmp_path, name, out)
    assert status == 1 and "No space left on device" in message and str(out) in message, message
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize("inside", [True, False])
def test_a_new_run_folder_is_never_inside_or_holding_its_training_data(tiny, tmp_path, inside):
    photos = tmp_path / "data" / "photos"
    photos.mkdir(parents=True)
    for image in tiny[2].iterdir():
        (photos / image.name).write_bytes(image.read_bytes())
    run_dir = photos / "run" if inside else tmp_path / "data"  # samples/ there would be trained on next time
    before = snapshot(tmp_path / "data")
    done = subprocess.run(
        [
            sys.executable,
            "train/run.py",
            "--dataset",
            str(photos),
            "--val-dataset",
            "none",
            "--output-dir",
            str(run_dir),
            "--steps",
            "1",
            "--log-with",
            "none",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and f"error: {run_dir}: " in done.stderr and "input" in done.stderr, done.stderr
    assert snapshot(tmp_path / "data") == before and not (photos / "run").exists()


@pytest.mark.parametrize(
    "signum, to_group",
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGTERM, False)],
    ids=["ctrl-c-to-the-group", "sigterm-to-the-group", "sigterm-to-the-command"],
)
def test_a_signal_during_prepare_with_worker_processes_is_one_line_and_leaves_no_process_or_file(
    tiny, tmp_path, signum, to_group
):
    """`prepare --num-proc 2` cuts sub-images in datasets' forked workers (and a manager process). Before, Ctrl-C to
    the terminal's group printed the workers' and datasets' tracebacks (its pool's clean-up raised a TimeoutError
    in place of the interrupt), and SIGTERM to the command alone left it waiting forever on a pool whose
    replacement workers never ended."""
    _, _, photos = tiny
    out, cache = tmp_path / "prepared", tmp_path / "cache"
    script = (
        "import sys, time\nimport train.data.subimages as m\nf = m.cut_subimages\n"
        "def slow(*a, **k):\n    print('writing', flush=True); time.sleep(120); return f(*a, **k)\n"
        "m.cut_subimages = slow\nm.main(sys.argv[1:])\n"
    )
    argv = [
        "prepare",
        "--dataset",
        photos,
        "--output",
        out,
        "--scale",
        "2",
        "--subimage-size",
        "16",
        "--subimage-step",
        "16",
        "--num-proc",
        "2",
        "--cache-dir",
        cache,
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, argv)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"},
    )
    try:
        assert process.stdout.readline().startswith("writing")  # a worker is cutting (both may print at once)
        time.sleep(0.5)  # the other worker too, most likely
        (os.killpg if to_group else os.kill)(process.pid, signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the test's own clean-up, whatever happened
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 128 + signum and len(lines) == 1, stderr[-3000:]
    assert lines[0] == f"interrupted: {out} not written, no partial folder left"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and group_alive(process.pid):
        time.sleep(0.1)
    assert not group_alive(process.pid), "a worker of the command outlived it"
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []
    assert list((cache / "sr-toolkit-subimages").glob("tmp*")) == [], "datasets' partial cache files were left"


STUCK = """
import multiprocessing, signal, sys, time
import sr_models.files as files
from sr_models.starting import stop_while_starting
stop_while_starting()  # as a command's entry point does
files.STUCK_WORKER_SECONDS = 1

def stuck():  # a worker that outlives the pool's SIGTERM (ignores it) and waits forever
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    time.sleep(600)

@files.writer_command
def main(how):
    worker = multiprocessing.get_context("fork").Process(target=stuck)
    worker.start()
    print("writing", flush=True)
    try:
        time.sleep(600)
    except BaseException:
        if how == "joins":  # a library's clean-up (a pool's terminate) that joins its workers before going on
            worker.join()
        raise

main(sys.argv[1])
"""


@pytest.mark.parametrize("how", ["joins", "leaves"])
def test_an_interrupted_command_ends_even_when_a_worker_does_not(tmp_path, how):
    """A worker that ignores SIGTERM: a library's clean-up that joins it ("joins", as a pool whose replacement worker
    is stuck on its queue lock) is unblocked by killing it after STUCK_WORKER_SECONDS; one left running ("leaves")
    no longer holds the command at its exit (multiprocessing's atexit joined it forever)."""
    process = subprocess.Popen(
        [sys.executable, "-c", STUCK, how],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143 and stderr.strip() == "interrupted: nothing more written, no partial file left"


def test_a_folder_upscale_clears_a_killed_lone_writers_lock_and_keeps_a_users_file(tiny, tmp_path):
    _, _, photos = tiny
    folder = tmp_path / "upscaled"
    folder.mkdir()
    stale = folder / ".p0.png.sr-toolkit.lock"
    stale.write_text("12345\n")  # what a SIGKILLed single-image upscale into this folder leaves
    users = folder / ".notes.txt.sr-toolkit.lock"
    users.write_text("the user's notes\n")  # not a lock file of ours: kept
    assert run(tiny, tmp_path, "upscale", folder, source=photos) == (0, "")
    assert not stale.exists() and users.read_text() == "the user's notes\n"


def test_after_a_command_ends_a_signal_no_longer_kills_its_process_silently():
    """Once `main` has returned (its line printed, its status decided), the command's process ignores the stop
    signals for the rest of its exit: before, a Ctrl-C then ended it by the signal, with no line (exit -2)."""
    from sr_models.files import writer_command
    from sr_models.starting import stop_while_starting

    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        stop_while_starting()  # as the command's entry point does
        writer_command(lambda: None)()
        assert all(signal.getsignal(number) is signal.SIG_IGN for number in saved)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a caller's own handler (tests, a library) ...
        writer_command(lambda: None)()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # ... is given back as it was
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
