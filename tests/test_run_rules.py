"""The rules of a training run's folder, its config and its resumption (train/run_folder.py, train/config.py,
train/checkpoint.py), tested in-process on a tiny PAN, plus two real processes racing for one folder."""

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest import REPO, train_config_in_process, train_in_process
from safetensors.torch import load_file, save_file

from train.checkpoint import CheckpointError, resolve_resume, write_manifest
from train.config import ConfigError, parse_args
from train.run_folder import MARKER, RunFolderLock

TINY = [
    "--model-overrides",
    "{channels: 8, upsample_channels: 8, num_blocks: 1}",
    "--lr-patch-size",
    "8",
    "--progress",
    "false",
    "--log-every",
    "1",
    "--log-with",
    "none",
    "--num-threads",
    "1",
    "--repeat-images",
    "true",
    "--batch-size",
    "2",
    "--val-dataset",
    "none",
    "--lr",
    "3e-3",
]

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def train(run_dir, *args):
    return train_in_process([*TINY, "--output-dir", str(run_dir), *args])


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------------------
# A run folder belongs to one run


def test_a_new_run_refuses_a_folder_holding_a_users_files_and_changes_nothing(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own config\n")
    (folder / "metrics.json").write_text('{"mine": true}\n')
    before = snapshot(folder)
    with pytest.raises(
        ConfigError, match="already holds files that are not a new run's \\(config.yaml, metrics.json\\)"
    ):
        train(folder, "--steps", "1")
    assert snapshot(folder) == before  # not even a lock file is left in it


def test_a_new_run_refuses_a_finished_run_and_a_run_that_failed_at_its_start_is_restartable(tmp_path):
    done = train(tmp_path / "done", "--steps", "1")
    before = snapshot(done)
    with pytest.raises(ConfigError, match="already holds a run's checkpoints"):
        train(done, "--steps", "1")
    assert snapshot(done) == before
    # A start that failed before its first checkpoint (here: a data folder without images) leaves only the files
    # a starting run writes; the next run may take that folder.
    empty = tmp_path / "no-images"
    empty.mkdir()
    failed = tmp_path / "failed"
    with pytest.raises(ValueError, match="no image files"):
        train(failed, "--steps", "1", "--dataset", str(empty))
    assert (failed / MARKER).exists()
    assert train(failed, "--steps", "1") == failed and (failed / "model.safetensors").is_file()
    assert [r["event"] for r in read_log(failed) if "event" in r] == ["start", "end"], "the failed start's log went"


def test_resume_continues_in_the_checkpoints_own_folder_never_another_runs(tmp_path):
    run_a = train(tmp_path / "a", "--steps", "4", "--stop-after", "2")
    run_b = train(tmp_path / "b", "--steps", "1")
    b_before = snapshot(run_b)
    checkpoint = run_a / "checkpoints" / "step-00000002"
    with pytest.raises(ConfigError, match=f"continues the run in its own folder {run_a}, not in --output-dir"):
        train_in_process(["--resume", str(checkpoint), "--output-dir", str(run_b)])
    assert snapshot(run_b) == b_before
    # A moved run folder resumes where it now is, not where its saved config.yaml says it was.
    moved = tmp_path / "moved"
    run_a.rename(moved)
    assert train_in_process(["--resume", str(moved / "checkpoints" / "step-00000002")]) == moved
    assert (moved / "model.safetensors").is_file() and not run_a.exists()


def test_a_folder_locked_by_another_process_is_refused(tmp_path):
    folder = tmp_path / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from train.run_folder import RunFolderLock; "
            "RunFolderLock(sys.argv[1], new_run=True); print('held', flush=True); time.sleep(60)",
            str(folder),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"busy: in use by another training process \\(pid {holder.pid}\\)"):
            RunFolderLock(folder, new_run=False)
    finally:
        holder.kill()
        holder.wait()
    RunFolderLock(folder, new_run=False).release()  # the kernel dropped the lock with its holder


def test_two_runs_started_at_once_on_one_folder_never_both_write(tmp_path, photos):
    folder = tmp_path / "race"
    command = [
        sys.executable,
        "train/run.py",
        *TINY,
        "--steps",
        "2",
        "--output-dir",
        str(folder),
        "--dataset",
        str(photos),
        "--cache-dir",
        str(tmp_path / "hf"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    runs = [subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in results) == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "Traceback" not in refused
    assert "in use by another training process" in refused or "already holds a run's checkpoints" in refused
    assert [r["event"] for r in read_log(folder) if "event" in r] == ["start", "end"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--warmup-fraction", "0.9", "--steps", "3"], "leaving none for the schedule"),
        (["--steps", str(10**19)], "steps: at most 1,000,000,000"),
        (["--lr", "nan"], "lr: must be a finite number"),
        (["--ema-decay", "inf"], "ema_decay: must be below 1"),
        (["--betas", "0.9,1.5"], "betas: each must be in \\[0, 1\\)"),
        (["--min-lr", "1", "--lr", "0.1"], "min_lr: the schedule decays from lr"),
        (["--batch-size", "999999999"], "batch_size: at most 65,536"),
        (["--model-overrides", "{num_blocks: 100000000}"], "num_blocks must be in 0..512"),
        (["--model-overrides", "{a: &x [1], b: *x}"], "YAML aliases"),
    ],
)
def test_a_failed_option_check_stops_before_any_work_and_leaves_no_folder(tmp_path, argv, message):
    with pytest.raises(ConfigError, match=message):
        train(tmp_path / "run", *argv)
    assert not (tmp_path / "run").exists()


def test_a_recipe_with_yaml_aliases_is_refused_without_expanding_them(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 items if expanded
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="bomb.yaml: YAML aliases \\(\\*a0\\) are not accepted"):
        parse_args(["--recipe", str(bomb)])


# ---------------------------------------------------------------------------------------------------------------
# Resume: what a checkpoint is, and what may change


def test_resume_refuses_overrides_that_contradict_the_checkpoint_naming_the_keys(tmp_path):
    run_dir = train(tmp_path / "run", "--steps", "4", "--stop-after", "2", "--ema-decay", "0.9")
    for argv, named in [
        (["--lr", "0.01"], "lr 0.003 -> 0.01"),
        (["--model-overrides", "{channels: 16, upsample_channels: 8, num_blocks: 1}"], "model_overrides"),
        (["--scale", "2"], "scale 4 -> 2"),
        (["--optimizer", "sgd"], "optimizer 'adam' -> 'sgd'"),
        (["--ema-decay", "0"], "ema_decay 0.9 -> 0.0"),
        (["--recipe", "pan_x4_report"], "recipe 'quickstart' -> 'pan_x4_report'"),
        (["--schedule-steps", "100"], "schedule_steps 4 -> 100"),
    ]:
        with pytest.raises(ConfigError, match=f"contradict it: .*{named}"):
            parse_args(["--resume", "latest", "--output-dir", str(run_dir), *argv])
    parse_args(["--resume", "latest", "--output-dir", str(run_dir), "--ema-decay", "0.99", "--steps", "8"])  # allowed
    # A config built in code for train(config) keeps to the same rule, whole, before anything is written.
    started = parse_args([*TINY, "--output-dir", str(run_dir), "--steps", "4", "--ema-decay", "0.9"])
    before = snapshot(run_dir)
    for changed, named in [
        (dict(lr=0.01), "lr 0.003 -> 0.01"),
        (dict(steps=8), "schedule_steps 4 -> 8"),
        (dict(losses={"l1": 1.0, "mse": 0.1}), "losses {'l1': 1.0} -> {'l1': 1.0, 'mse': 0.1}"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"contradict it: {named}")):
            train_config_in_process(replace(started, resume="latest", **changed))
    assert snapshot(run_dir) == before
    assert train_config_in_process(replace(started, resume="latest")) == run_dir
    assert (run_dir / "model.safetensors").is_file()


def test_more_steps_after_the_schedule_ended_run_at_its_final_rate(tmp_path):
    run_dir = train(tmp_path / "run", "--steps", "4", "--min-lr", "1e-5")
    train_in_process(["--resume", "latest", "--output-dir", str(run_dir), "--steps", "7"])
    rates = {r["step"]: r["lr"] for r in read_log(run_dir) if "lr" in r}
    assert sorted(rates) == [1, 2, 3, 4, 5, 6, 7]
    assert rates[1] == pytest.approx(3e-3) and rates[4] < rates[3] < rates[2] < rates[1]  # the planned cosine
    assert [rates[s] for s in (5, 6, 7)] == pytest.approx([1e-5] * 3)  # held at the end, never rising again
    saved = (run_dir / "checkpoints" / "step-00000007" / "config.yaml").read_text()
    assert "schedule_steps: 4" in saved and "steps: 7" in saved


def test_a_damaged_checkpoint_is_named_and_latest_takes_the_newest_intact_one(tmp_path, capsys):
    run_dir = train(tmp_path / "run", "--steps", "6", "--save-every", "2", "--keep-checkpoints", "3")
    newest = run_dir / "checkpoints" / "step-00000006"
    optimizer = newest / "optimizer.bin"
    data = bytearray(optimizer.read_bytes())
    data[len(data) // 2] ^= 0x01
    optimizer.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="step-00000006/optimizer.bin: damaged"):
        resolve_resume(str(newest), run_dir)
    said = []
    assert resolve_resume("latest", run_dir, say=said.append).name == "step-00000004"
    assert "optimizer.bin: damaged" in said[0] and "resuming from step-00000004" in said[1]
    (run_dir / "checkpoints" / "step-00000004" / "random_states_0.pkl").unlink()
    said.clear()
    assert resolve_resume("latest", run_dir, say=said.append).name == "step-00000002"
    assert "random_states_0.pkl: missing" in said[1]


def test_a_checkpoint_with_nan_weights_is_refused_at_resume(tmp_path):
    run_dir = train(tmp_path / "run", "--steps", "4", "--stop-after", "2")
    checkpoint = run_dir / "checkpoints" / "step-00000002"
    state = load_file(checkpoint / "model.safetensors")
    state["tail.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, checkpoint / "model.safetensors", metadata={"format": "pt"})
    write_manifest(checkpoint)  # the NaN written before the manifest: sizes and digests all agree
    with pytest.raises(CheckpointError, match="model.safetensors: tensor tail.weight holds NaN"):
        train_in_process(["--resume", "latest", "--output-dir", str(run_dir)])
    assert not (run_dir / "model.safetensors").exists()


def test_a_checkpoint_without_its_manifest_is_refused(tmp_path):
    """Removing manifest.json must not switch the damage checks off: flipped bits would then be trained on."""
    run_dir = train(tmp_path / "run", "--steps", "4", "--stop-after", "2")
    checkpoint = run_dir / "checkpoints" / "step-00000002"
    (checkpoint / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"step-00000002/manifest\.json: missing"):
        train_in_process(["--resume", str(checkpoint)])


def test_final_weights_that_turned_nan_are_not_written(tmp_path, monkeypatch):
    import train.run as run_module

    original = run_module.save_checkpoint

    def poison_then_save(accelerator, **kwargs):  # the weights break after the last update
        with torch.no_grad():
            for parameter in accelerator._models[0].parameters():
                parameter.fill_(float("nan"))
        return original(accelerator, **kwargs)

    monkeypatch.setattr(run_module, "save_checkpoint", poison_then_save)
    with pytest.raises(ValueError, match="holds .* NaN or infinite value"):
        train(tmp_path / "run", "--steps", "1")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_another_runs_weights_or_optimizer_state_is_refused_in_one_line_and_the_run_folder_is_unchanged(
    tmp_path, photos
):
    """Tensors of another run's model (16 channels, not 8) copied into a checkpoint whose manifest was rewritten to
    match: resuming refuses them before load_state (which stopped with a size-mismatch traceback on the weights, and
    loaded the optimizer's and failed at its first step); a scheduler.bin of garbage bytes is unreadable, not code."""
    from test_one_line import assert_one_line

    data = ["--dataset", str(photos), "--cache-dir", str(tmp_path / "hf")]  # builtin's ICC warning: not one line
    run_a = train(tmp_path / "a", "--steps", "2", *data)
    wider = ["--model-overrides", "{channels: 16, upsample_channels: 8, num_blocks: 1}"]
    run_b = train_in_process([*TINY, *wider, "--output-dir", str(tmp_path / "b"), "--steps", "2", *data])
    checkpoint, other = (run / "checkpoints" / "step-00000002" for run in (run_a, run_b))
    originals = snapshot(checkpoint)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    cases = [
        ("model.safetensors", "does not fit this run's model (head.weight is 8x3x3x3 here, 16x3x3x3 in the file)"),
        (
            "optimizer.bin",
            "does not fit this run's optimizer (exp_avg of head.weight is 16x3x3x3 in the file, "
            "the parameter is 8x3x3x3 here)",
        ),
        ("scheduler.bin", "not a readable scheduler state"),
    ]
    for name, expected in cases:
        if name == "scheduler.bin":
            (checkpoint / name).write_bytes(bytes(range(256)) * 4)
        else:
            (checkpoint / name).write_bytes((other / name).read_bytes())
        write_manifest(checkpoint)  # the hashes agree with the swapped file: only its shapes can tell
        before = {k: v for k, v in snapshot(run_a).items() if k != MARKER}  # the lock's holder pid is rewritten
        done = subprocess.run(
            [sys.executable, "train/run.py", "--resume", "latest", "--output-dir", str(run_a)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        line = assert_one_line(done, f"{checkpoint / name}: ", expected)
        assert name == "scheduler.bin" or line.endswith("it is not this run's checkpoint"), line
        assert {k: v for k, v in snapshot(run_a).items() if k != MARKER} == before, name
        for file, content in originals.items():  # the intact checkpoint again, for the next case
            (checkpoint / file).write_bytes(content)
    assert train_in_process(["--resume", "latest", "--output-dir", str(run_a), "--steps", "3"]) == run_a  # it fits


# ---------------------------------------------------------------------------------------------------------------
# Structure, not totals: a recipe's resume: and a checkpoint's manifest (docs/reliability.md)


def test_a_recipes_resume_gets_the_same_contradiction_checks_before_anything_is_written(tmp_path):
    run_dir = train(tmp_path / "run", "--steps", "4", "--stop-after", "2")
    before = snapshot(run_dir)
    recipe = tmp_path / "more.yaml"
    recipe.write_text(f"resume: latest\noutput_dir: {run_dir}\nsteps: 6\nlr: 0.01\nbatch_size: 3\n")
    with pytest.raises(
        ConfigError,
        match=rf"\(resumed by {recipe}\): a resumed run continues as it was started; "
        r"these overrides contradict it: lr 0.003 -> 0.01, batch_size 2 -> 3",
    ):
        parse_args(["--recipe", str(recipe)])
    with pytest.raises(ConfigError, match="contradict it: lr 0.003 -> 0.01"):  # through the command, no folder touched
        train_in_process(["--recipe", str(recipe)])
    assert snapshot(run_dir) == before
    # The recipe's resume: takes the checkpoint's config as its base, as --resume does; the command line still wins.
    recipe.write_text(f"resume: latest\noutput_dir: {run_dir}\nsteps: 6\n")
    config = parse_args(["--recipe", str(recipe), "--steps", "5"])
    assert (config.resume, config.steps, config.lr, config.batch_size, config.schedule_steps) == (
        "latest",
        5,
        3e-3,
        2,
        4,
    )


def test_a_manifest_edited_to_lie_is_named(tmp_path):
    run_dir = train(tmp_path / "run", "--steps", "2")
    checkpoint = run_dir / "checkpoints" / "step-00000002"
    manifest = checkpoint / "manifest.json"
    original = json.loads(manifest.read_text())
    resolve_resume(str(checkpoint), run_dir)  # intact

    def lying(edit):
        entries = json.loads(json.dumps(original))
        edit(entries)
        manifest.write_text(json.dumps(entries))

    cases = [
        (lambda e: e.pop("optimizer.bin"), r"step-00000002/optimizer\.bin: not listed in .*manifest\.json"),
        (lambda e: e["optimizer.bin"].update(bytes="12"), r"manifest\.json: entry 'optimizer\.bin' is .*not"),
        (
            lambda e: e.update({"../../elsewhere": e["config.yaml"]}),
            r"entry '\.\./\.\./elsewhere' is not a file inside",
        ),
        (lambda e: e["model.safetensors"].update(sha256="0" * 63), r"entry 'model\.safetensors' is .*not"),
        (lambda e: e.clear() or e.update({"x": []}), "entry 'x' is"),
    ]
    for edit, expected in cases:
        lying(edit)
        with pytest.raises(CheckpointError, match=expected):
            resolve_resume(str(checkpoint), run_dir)
    manifest.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="manifest.json: not a mapping"):
        resolve_resume(str(checkpoint), run_dir)
    manifest.write_text(json.dumps(original))
    (checkpoint / "extra.pkl").write_bytes(b"added later")  # a file the manifest never listed
    with pytest.raises(CheckpointError, match=r"step-00000002/extra\.pkl: not listed in"):
        resolve_resume(str(checkpoint), run_dir)


@pytest.mark.parametrize(
    "removed",
    ["optimizer.bin", "scheduler.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl"],
)
def test_a_file_removed_with_its_manifest_entry_is_named_before_loading(tmp_path, removed):
    """The manifest lists what was written; what resuming loads is checked as well (with EMA: two registered
    objects), or a file removed together with its entry ends in load_state's traceback."""
    run_dir = train(tmp_path / "run", "--steps", "2", "--ema-decay", "0.9")
    checkpoint = run_dir / "checkpoints" / "step-00000002"
    manifest = checkpoint / "manifest.json"
    entries = json.loads(manifest.read_text())
    entries.pop(removed)
    manifest.write_text(json.dumps(entries))
    (checkpoint / removed).unlink()
    before = snapshot(run_dir / "checkpoints")
    with pytest.raises(CheckpointError, match=rf"step-00000002/{re.escape(removed)}: missing: the checkpoint"):
        train(run_dir, "--steps", "3", "--ema-decay", "0.9", "--resume", "latest")
    assert snapshot(run_dir / "checkpoints") == before


# ---------------------------------------------------------------------------------------------------------------
# Bounded: training memory is estimated before it is allocated (train/memory_bound.py)


def test_a_patch_too_large_for_the_machine_is_refused_in_one_line_before_the_run_folder(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "train/run.py",
            "--lr-patch-size",
            "4096",
            "--small-images",
            "pad",
            "--steps",
            "1",
            "--val-dataset",
            "none",
            "--log-with",
            "none",
            "--output-dir",
            str(tmp_path / "run"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training needs about ") and "LR patch 4096x4096, HR 16384x16384" in line
    assert line.endswith("use a smaller --lr-patch-size or --batch-size (docs/reliability.md)")
    assert "this machine has " in line and (
        "available (MemAvailable, 1 process(es))" in line or "free on the GPU" in line
    )
    assert not (tmp_path / "run").exists()


PEAK = """
import re, runpy, sys
import accelerate

# The peak is read from the point training starts (data decoded or the store prepared, model built, everything
# prepared), so a fresh clone's one-off store preparation cannot hide what the batch adds: VmHWM is reset there.
prepare = accelerate.Accelerator.prepare
def prepare_then_reset_peak(self, *args):
    prepared = prepare(self, *args)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return prepared
accelerate.Accelerator.prepare = prepare_then_reset_peak
sys.argv = ["train/run.py", *sys.argv[1:]]
try:
    runpy.run_path("train/run.py", run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        print("peak", int(re.search(r"VmHWM:\\s+(\\d+)", status.read()).group(1)) * 1024)
"""


@pytest.mark.skipif(
    not os.path.exists("/proc/self/clear_refs"),
    reason="reads and resets the peak resident size through Linux /proc (VmHWM, clear_refs)",
)
def test_the_memory_estimate_bounds_a_real_runs_peak_and_is_not_far_above_it(tmp_path):
    """The estimate of what one micro-batch adds is compared with the peak resident size it really adds: two real
    runs, one with a tiny batch (the process itself: Python, PyTorch, the data) and one with batch 4 x LR 48."""
    from train.memory_bound import training_memory

    def peak(name, *args):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                PEAK,
                "--steps",
                "2",
                "--val-dataset",
                "none",
                "--log-with",
                "none",
                "--progress",
                "false",
                "--num-threads",
                "1",
                "--repeat-images",
                "true",
                "--output-dir",
                str(tmp_path / name),
                *args,
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return int(result.stdout.split("peak")[-1])

    small, large = ["--lr-patch-size", "8", "--batch-size", "1"], ["--lr-patch-size", "48", "--batch-size", "4"]
    added = peak("large", *large) - peak("small", *small)
    estimate = (lambda c: c["device"] + c["host"])(training_memory(parse_args(large)))
    assert added <= estimate <= 4 * added, (added, estimate)
