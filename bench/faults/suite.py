"""What every case stands on: the scratch folder, its good images and tiny model, the command table bound to
them, what cases share (the uninterrupted reference run, a decoded store) and the judgments several cases make."""

import shutil
import threading
import time
from pathlib import Path

import numpy as np

from bench.faults import harness
from bench.faults.commands import SCALE, Commands, injected
from bench.faults.harness import Result, describe_failure, judge_refusal, read_log, run, start, usable_run
from bench.faults.makers import make_photos, make_tiny_model
from sr_models.images import load_rgb

# The interruption cases: checkpoints every 2 steps, no validation, a rate at which the weights move.
RESUMABLE = ["--val-dataset", "none", "--save-every", "2", "--lr", "0.01"]


class Suite:
    def __init__(self, root):
        self.root = harness.SCRATCH = Path(root)
        self.good = self.root / "good"  # 3 good training images, shared by the folders built below
        self.good.mkdir()
        make_photos(self.good)
        self.weights, self.onnx = make_tiny_model(self.root)
        self.c = Commands(self.root, good=self.good, weights=self.weights, onnx=self.onnx)
        self.lock = threading.Lock()
        self.whole = None

    def folder(self, name, extra=()):
        """A fresh folder holding the good images plus `extra` [(file name, maker)]: (folder, {name: expected})."""
        folder = self.root / name
        shutil.copytree(self.good, folder)
        expected = {}
        for file_name, maker in extra:
            expected[file_name] = maker(folder / file_name)
        return folder, expected

    def train(self, out, *args, steps=2):
        """Run the tiny training into run folder `out`: (outcome, run folder)."""
        return run(self.c.train(out, *args, steps=steps)), self.c.run_dir(out)

    def start_training(self, name, *, injection=(), extra=(), new_session=False):
        """Start an 8-step run of the good images, checkpointing every 2 steps (RESUMABLE), and leave it running:
        (process, run folder). `injection`: [name, value...] of bench/faults/injections.py to run it."""
        command = self.c.train(name, "--dataset", str(self.good), *RESUMABLE, *extra, steps=8)
        if injection:
            command = injected(injection[0], [*injection[1:], *command])
        return start(command, new_session=new_session), self.c.run_dir(name)

    # ---- shared between cases, made once -----------------------------------------------------------------

    def uninterrupted(self):
        """The reference run of the interruption cases (8 steps), made once and shared between threads."""
        with self.lock:
            if self.whole is None:
                self.whole = self.train("whole", "--dataset", str(self.good), *RESUMABLE, steps=8)
        return self.whole

    def store_copy(self, name):
        """A copy of a decoded store of the good images (prepared once, through the prepare command)."""
        with self.lock:
            store = self.root / "good.store"
            if not store.exists():
                outcome = run(self.c.prepare(self.good, store, "--store"))
                if outcome.returncode != 0:
                    raise RuntimeError("preparing the store failed: " + describe_failure(outcome))
        copy = self.root / name
        shutil.copytree(store, copy)
        return copy

    # ---- judgments -----------------------------------------------------------------------------------------

    def judge_trained(self, case, where, outcome, run_dir, *, images):
        """Handled when the run ended with a usable run folder, having trained on `images` images."""
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        problem = usable_run(run_dir)
        if problem:
            return Result(case, where, "lost", problem, outcome.seconds)
        first = read_log(run_dir)[0]
        if first["train_images"] != images:
            return Result(
                case, where, "lost", f"trained on {first['train_images']} images, not {images}", outcome.seconds
            )
        return Result(case, where, "handled", f"trains ({images} images used)", outcome.seconds)

    def judge_upscaled(self, case, outcome, target, expected):
        """Handled when export/upscale.py wrote `target` equal to the tiny model's upscale of `expected`."""
        where = "export/upscale.py"
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        from export.runtime import OnnxUpscaler

        reference = OnnxUpscaler(self.onnx, device="cpu")(expected)
        got = load_rgb(target)
        if got.shape != reference.shape:
            return Result(case, where, "lost", f"output {got.shape} != expected {reference.shape}", outcome.seconds)
        difference = np.abs(got.astype(int) - reference.astype(int)).mean()
        if difference > 0:
            return Result(
                case,
                where,
                "lost",
                f"output differs from the reference by {difference:.2f} on average",
                outcome.seconds,
            )
        return Result(
            case,
            where,
            "handled",
            f"upscales: {got.shape[1]}x{got.shape[0]} RGB, equal to the reference",
            outcome.seconds,
        )

    def judge_kept(self, case, where, outcome, kept, *, names):
        """A refusal (one `error:` line naming `names`) that left every file of `kept` ({path: bytes}) as it was."""
        changed = [str(path) for path, data in kept.items() if not path.is_file() or path.read_bytes() != data]
        if changed:
            return Result(case, where, "lost", f"changed or removed: {', '.join(changed)[:120]}", outcome.seconds)
        result = judge_refusal(case, where, outcome, names=names)
        if result.verdict == "handled":
            result.what += "; nothing of the user's changed"
        return result

    def resume_and_compare(self, case, name, started, *, why):
        """Resume run `name` with --resume latest and compare its final weights with the uninterrupted run's."""
        where = "train/run.py"
        whole, whole_dir = self.uninterrupted()
        if whole.returncode != 0:
            return Result(case, where, "other", "uninterrupted run failed: " + describe_failure(whole))
        resumed, run_dir = self.train(name, "--resume", "latest", steps=8)
        seconds = time.perf_counter() - started
        if resumed.returncode != 0:
            return Result(case, where, "lost", "resume failed: " + describe_failure(resumed), seconds)
        from sr_models.weights import load_model

        a = load_model(whole_dir / "model.safetensors").state_dict()
        b = load_model(run_dir / "model.safetensors").state_dict()
        difference = max((a[k] - b[k]).abs().max().item() for k in a)
        if difference != 0:
            return Result(case, where, "lost", f"resumed weights differ by {difference:.2e}", seconds)
        return Result(
            case,
            where,
            "handled",
            f"{why}; --resume latest ends with weights identical to an uninterrupted run's",
            seconds,
        )


def bicubic_psnr_y(hr):
    """The bicubic baseline's PSNR_Y of an HR image, computed in this process: the reference figure."""
    from sr_models.evaluation.metrics import image_metrics
    from sr_models.evaluation.resize import upscale_bicubic
    from sr_models.evaluation.samples import sample_from_hr

    sample = sample_from_hr("reference", hr, SCALE)
    return image_metrics(upscale_bicubic(sample.lr, SCALE), sample.hr, scale=SCALE)["psnr_y"]
