"""What a run tells its user while it trains: one line per validation set, the best weights so far, log cadence.

Each validation prints, on the main process, one line per validation set:

    step 500 | Set5: PSNR_Y 31.2345 dB, SSIM_Y 0.8812 | +2.81 dB over bicubic | best 31.2345 dB at step 500

The best weights by validation PSNR_Y (of the first set of --val-dataset) are kept as `model_best.safetensors`
with their step and figure in its metadata; a resumed run reads them back, so "best" spans the whole run.
"""

from pathlib import Path

from tqdm.auto import tqdm

from sr_models.evaluation.scoring import format_table
from sr_models.weights import save_weights
from train.threads import available_cores
from train.validation import scalars, validate

BEST_FILE = "model_best.safetensors"
SHOWN_FILES = 5  # left-out files named on the console; the log has them all


def log_interval(config):
    """Log every `log_every` steps, but at least 20 times a run: a short run (the report recipes log every 100)
    still shows its loss."""
    return max(1, min(config.log_every, config.steps // 20))


def cap_workers(requested, *, processes, cores=None):
    """DataLoader workers per process, at most the cores this process may use divided among the processes on
    the machine (PyTorch warns, per loader, when a machine has fewer cores than workers). Returns (workers, note)."""
    cores = cores or available_cores()
    limit = max(1, cores // max(1, processes))
    if requested <= limit:
        return requested, None
    return limit, (
        f"note: --num-workers {requested} lowered to {limit} per process ({cores} CPU core(s), {processes} process(es))"
    )


def left_out_lines(left_out):
    """Console lines naming the first files left out before training (all of them go to the log)."""
    lines = []
    for key, why in (
        ("small_names", "smaller than the patch (--small-images skip)"),
        ("corrupt_names", "unreadable (--skip-corrupt)"),
    ):
        names = left_out.get(key) or []
        if names:
            shown = ", ".join(names[:SHOWN_FILES]) + (
                f" ... ({len(names)} in all, listed in log.jsonl)" if len(names) > SHOWN_FILES else ""
            )
            lines.append(f"left out {len(names)} image(s) {why}: {shown}")
    return lines


class Validator:
    """Validates on every set, logs and prints one line per set, and keeps the best weights (first set)."""

    def __init__(self, sets, *, run_dir, scale, preview_images, accelerator, log, perceptual=None):
        self.sets, self.run_dir, self.scale, self.perceptual = sets, Path(run_dir), scale, perceptual
        self.preview_images, self.accelerator, self.log = preview_images, accelerator, log
        self.best_psnr_y, self.best_step = read_best(self.run_dir / BEST_FILE)

    def __bool__(self):
        return bool(self.sets)

    @property
    def image_count(self):
        return sum(len(samples) for samples in self.sets.values())

    def __call__(self, model, *, step, device):
        """Score `model` on every set; returns {label: report}. The first set's figures log as `val/...`, the
        others' as `val/<label>/...`."""
        reports = {}
        for index, (label, samples) in enumerate(self.sets.items()):
            report = validate(
                model,
                samples,
                device=device,
                scale=self.scale,
                step=step,
                run_dir=self.run_dir,
                preview_images=self.preview_images,
                accelerator=self.accelerator,
                prefix="" if len(self.sets) == 1 else f"{label}-",
                perceptual=self.perceptual,
            )
            key = "val" if index == 0 else f"val/{label}"
            self.log.write({"step": step, **{f"{key}/{k}": v for k, v in scalars(report).items()}}, step=step)
            if index == 0:
                self.keep_if_best(model, report["mean"]["psnr_y"], step=step)
            tqdm.write(self.line(label, report, step=step, first=index == 0))
            reports[label] = report
        return reports

    def final(self, model, *, step, device, say):
        """The end of a run: every set scored with `model` (the saved file), its table printed; returns the
        figures of metrics.json (the first set's, the best step, and each set's means when there are several)."""
        reports = self(model, step=step, device=device)
        first = next(iter(reports.values()))["mean"]
        metrics = {key: first[key] for key in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")}
        metrics.update(best_step=self.best_step, best_psnr_y=self.best_psnr_y)
        if len(reports) > 1:
            metrics["val_sets"] = {label: report["mean"] for label, report in reports.items()}
        for label, report in reports.items():
            named = f" ({label})" if len(reports) > 1 else ""
            gain = report["mean"]["psnr_y"] - report["mean"]["bicubic_psnr_y"]
            say((f"{label}: " if named else "") + format_table(report))
            say(f"held-out PSNR_Y {gain:+.2f} dB over bicubic after {step} steps{named}")
        return metrics

    def keep_if_best(self, model, psnr_y, *, step):
        if self.best_psnr_y is not None and psnr_y <= self.best_psnr_y:
            return
        self.best_psnr_y, self.best_step = psnr_y, step
        save_weights(model, self.run_dir / BEST_FILE, extra={"step": str(step), "val_psnr_y": repr(psnr_y)})
        self.log.write({"event": "best", "step": step, "val/psnr_y": psnr_y, "file": BEST_FILE}, to_trackers=False)

    def line(self, label, report, *, step, first):
        mean = report["mean"]
        text = (
            f"step {step} | {label}: PSNR_Y {mean['psnr_y']:.4f} dB, SSIM_Y {mean['ssim_y']:.4f} | "
            f"{mean['psnr_y'] - mean['bicubic_psnr_y']:+.2f} dB over bicubic"
        )
        if first:
            text += f" | best {self.best_psnr_y:.4f} dB at step {self.best_step}"
        return text


def read_best(path):
    """(PSNR_Y, step) of a run's best weights so far, from the file's metadata; (None, None) without one."""
    if not path.is_file():
        return None, None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "val_psnr_y" not in metadata:
        return None, None
    return float(metadata["val_psnr_y"]), int(metadata["step"])
