"""One prepared check of a GPU machine (run it through bench/gpu_check.sh): correctness on CUDA, throughput of the
toolkit against a plain PyTorch loop, host syncs per optimizer step, FLOPs and the share of the GPU's bf16 peak,
and multi-process scaling on the machine's CPU cores. Prints one table at the end and writes gpu_check.json
(into $OUT when set, else the current folder; rewritten after every figure). No new work starts after --budget-s
seconds: what would overrun is reported as skipped. Sections run in order of priority: correctness, throughput
without compilation, scaling, throughput with torch.compile, FLOPs.

    bench/gpu_check.sh                 # on the GPU machine
    bench/gpu_check.sh --cpu           # everything shrunk (tiny models, a few steps), CPU only: checks the script

Sections
    correctness  `accelerate launch --config_file launch_configs/single_gpu.yaml train/run.py` (bf16) and
                 single_gpu_fp16.yaml (fp16 + loss scaling), recipe pan_x4_paper on a decoded store of
                 DIV2K-sized photos: stop half-way, resume, finite and decreasing loss, then export/to_onnx.py of
                 the final weights with its parity check (onnxruntime on CPU: onnxruntime-gpu is not there)
    throughput   PAN (pan_x4_paper: batch 32, LR 64) and SRResNet (batch 16, LR 24): train/run.py in this process
                 (decoded store, DataLoader workers) against bench/train_speed.py's plain loop of the same variant
                 (batches made beforehand, on the GPU): samples/s, data-wait fraction, peak GPU memory
    syncs        host-device synchronisations per optimizer step in the toolkit's steady state (PAN, bf16,
                 channels_last), counted by torch.cuda.set_sync_debug_mode("warn"), logging steps left out
    flops        FLOPs of one training sample (forward + backward, convolutions and matmuls, by
                 torch.utils.flop_counter), the share of the GPU's dense bf16 peak reached by the best toolkit
                 variant, and the wall time of the paper's 1M steps at that rate
    degrade      train.degrade's Degrader (the second-order pipeline, Real-ESRGAN's defaults) on the device, one
                 batch of pan_x4_paper's HR patches (32 x 256x256) at a time: ms per batch, and its share of the
                 toolkit's PAN bf16 step measured under throughput (what lr_mode degrade adds to the feed step)
    scaling      launch_configs/cpu_ddp.yaml with 1, 2, 4, 8 CPU processes (GPU hidden): samples/s, in the
                 precision auto picks on that CPU (bf16 only where it is native)
"""

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from train_common import logged_windows, make_2k_images, run_training
from train_speed import plain_loop

from sr_models import create_model
from sr_models.errors import user_errors
from sr_models.registry import architecture
from train.config import load_recipe
from train.data import load_source, write_store
from train.degrade import DegradeOptions, Degrader
from train.step_guard import StepGuard

REPO = Path(__file__).resolve().parents[1]
MODELS = {"pan": {"batch_size": 32, "lr_patch": 64}, "srresnet": {"batch_size": 16, "lr_patch": 24}}
VARIANTS = ("eager", "bf16", "bf16_channels_last", "bf16_channels_last_compile")
# Dense bf16 tensor-core peak (no sparsity), from the vendor's data sheets.
BF16_PEAK = {"H200": 989.4e12, "H100 80GB HBM3": 989.4e12, "H100 PCIe": 756.5e12, "A100": 312e12}
TINY = {name: architecture(name).tiny for name in MODELS}  # the descriptors' tiny configurations


class Check:
    """The settings of one run: full size on a GPU, everything shrunk with --cpu."""

    def __init__(self, args):
        self.cpu = args.cpu
        self.deadline = time.monotonic() + args.budget_s
        self.workdir = Path(args.workdir)
        self.out = Path(os.environ.get("OUT") or ".")
        self.device = "cpu" if self.cpu else "cuda"
        self.results = {"machine": machine(), "skipped": []}
        self.rows = []  # (section, item, figure) for the final table
        if self.cpu:
            self.train_steps, self.warmup, self.measured, self.log_every = 8, 2, 3, 1
            self.workers, self.processes = 0, [1, 2]
            self.variants = [v for v in VARIANTS if "compile" not in v]  # inductor on 2 CPU cores: minutes
        else:
            self.train_steps, self.warmup, self.measured, self.log_every = 120, 20, 60, 20
            self.workers, self.processes = 8, [1, 2, 4, 8]
            self.variants = list(VARIANTS)

    def left(self):
        return self.deadline - time.monotonic()

    def row(self, section, item, figure):
        self.rows.append((section, item, figure))
        print(f"{section:<12}{item:<44}{figure}", flush=True)
        self.save()  # after every figure: a run stopped by the hard time limit still leaves what it measured

    def save(self):
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=2) + "\n")

    def skip(self, what, why):
        self.results["skipped"].append(f"{what}: {why}")
        self.row("skipped", what, why)

    def model_options(self, name):
        """The model and its batch, as config overrides (load_recipe)."""
        options = {"model": name, "batch_size": self.batch_size(name), "lr_patch_size": self.lr_patch(name)}
        return {**options, "model_overrides": TINY[name]} if self.cpu else options

    def model_args(self, name):
        """model_options as train/run.py's command-line options."""
        args = []
        for key, value in self.model_options(name).items():
            args += [f"--{key.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
        return args

    def batch_size(self, name):
        return 4 if self.cpu else MODELS[name]["batch_size"]

    def lr_patch(self, name):
        return 16 if self.cpu else MODELS[name]["lr_patch"]


def machine():
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(config_file, *args, processes=None, env=None, timeout):
    """`accelerate launch --config_file CONFIG train/run.py ARGS` in a new process: (return code, output tail)."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / config_file),
        "--main_process_port",
        str(free_port()),
        *(["--num_processes", str(processes)] if processes else []),
        str(REPO / "train" / "run.py"),
        *args,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO), **(env or {})}
    try:
        result = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, f"error: stopped after {timeout:.0f} s (time budget)"
    return result.returncode, (result.stdout + result.stderr)[-1500:]


# ---- data ---------------------------------------------------------------------------------------------------


def prepare_store(check):
    """A decoded store of DIV2K-sized photos (built-in ones with --cpu): what every run below trains on."""
    start = time.perf_counter()
    if check.cpu:
        source, label = load_source("builtin", split="train"), "builtin photos"
    else:
        folder = check.workdir / "div2k_like"
        make_2k_images(folder, count=16)
        source, label = load_source(str(folder), split="train", cache_dir=str(check.workdir / "hf-cache")), "16 2K PNGs"
    store = check.workdir / "train.store"
    write_store(source, store, scale=4, num_proc=1 if check.cpu else min(16, os.cpu_count()))
    check.row("data", f"decoded store of {label}", f"{time.perf_counter() - start:.1f} s to make")
    return store


# ---- correctness ----------------------------------------------------------------------------------------------


def correctness(check, store):
    configs = [("bf16", "launch_configs/single_gpu.yaml"), ("fp16", "launch_configs/single_gpu_fp16.yaml")]
    for precision, config_file in configs:
        if check.cpu:  # the same commands on the CPU: bf16 autocast (asked for by name); fp16 loss scaling needs CUDA
            config_file = "launch_configs/cpu.yaml"
            precision_args = ["--mixed-precision", "bf16" if precision == "bf16" else "no"]
        else:  # bf16 asked for by name (auto would pick fp16 on a GPU without it); fp16 from its launch config
            precision_args = ["--mixed-precision", "bf16"] if precision == "bf16" else []
        if check.left() < 120:
            check.skip(f"correctness {precision}", "time budget")
            continue
        run_dir = check.workdir / f"correct-{precision}"
        steps = check.train_steps
        common = [
            "--log-every",
            str(max(1, steps // 10)),
            "--val-dataset",
            "none",
            "--save-every",
            "0",
            "--progress",
            "false",
            "--log-with",
            "none",
            "--output-dir",
            str(run_dir),
        ]
        first = [
            "--recipe",
            "pan_x4_paper",
            "--dataset",
            str(store),
            "--steps",
            str(steps),
            "--stop-after",
            str(steps // 2),
            "--num-workers",
            str(check.workers),
            "--lr",
            "1e-3",
            "--repeat-images",
            "true",
            *precision_args,
            *check.model_args("pan"),
            *common,
        ]
        outcome = {"precision": precision}
        code, tail = launch(config_file, *first, timeout=max(60, check.left()))
        if code == 0:
            code, tail = launch(
                config_file, "--resume", "latest", "--stop-after", "0", *common, timeout=max(60, check.left())
            )
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()] if code == 0 else []
        losses = [r["loss"] for r in log if "loss" in r]
        starts = [r for r in log if r.get("event") == "start"]
        outcome.update(
            {
                "trained": code == 0,
                "losses": losses,
                "mixed_precision": starts[0]["mixed_precision"] if starts else None,
                "resumed_at": starts[-1]["step"] if len(starts) == 2 else None,
            }
        )
        outcome["finite"] = bool(losses) and all(math.isfinite(loss) for loss in losses)
        head, tail_losses = losses[: max(1, len(losses) // 4)], losses[-max(1, len(losses) // 4) :]
        outcome["decreasing"] = bool(losses) and statistics.mean(tail_losses) < statistics.mean(head)
        outcome["resumed"] = outcome["resumed_at"] == steps // 2 and bool(log) and log[-1].get("event") == "end"
        if code == 0:
            onnx = check.workdir / f"correct-{precision}.onnx"
            export = subprocess.run(
                [
                    sys.executable,
                    str(REPO / "export" / "to_onnx.py"),
                    "--weights",
                    str(run_dir / "model.safetensors"),
                    "--output",
                    str(onnx),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=max(60, check.left()),
                check=False,
            )
            parity_file = onnx.with_name(onnx.name + ".parity.json")
            outcome["onnx_parity"] = export.returncode == 0 and parity_file.is_file()
            if not outcome["onnx_parity"]:
                tail = export.stdout[-800:] + export.stderr[-800:]
        else:
            outcome["onnx_parity"] = False
        outcome["ok"] = all(outcome[k] for k in ("trained", "finite", "decreasing", "resumed", "onnx_parity"))
        if not outcome["ok"]:
            outcome["output_tail"] = tail
        check.results.setdefault("correctness", []).append(outcome)
        verdict = (
            "ok"
            if outcome["ok"]
            else "FAILED "
            + ", ".join(k for k in ("trained", "finite", "decreasing", "resumed", "onnx_parity") if not outcome[k])
        )
        loss_range = f"loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "no loss logged"
        check.row(
            "correctness",
            f"{precision} ({outcome['mixed_precision']}): stop, resume, ONNX parity",
            f"{verdict}; {loss_range}",
        )
        if not outcome["ok"]:
            print(tail, file=sys.stderr)


# ---- throughput and syncs -----------------------------------------------------------------------------------------


def toolkit_run(check, store, name, variant, *, count_syncs=False):
    """train/run.py in this process: (samples/s, data-wait fraction, peak GPU MiB, syncs per step or None)."""
    steps = check.warmup + check.measured
    config = load_recipe(
        "pan_x4_paper",
        **check.model_options(name),
        dataset=str(store),
        steps=steps,
        log_every=check.log_every,
        val_dataset="none",
        save_every=0,
        progress=False,
        log_with="none",
        num_workers=check.workers,
        repeat_images=True,
        mixed_precision="bf16" if "bf16" in variant else "no",
        channels_last="channels_last" in variant,
        compile="compile" in variant,
        output_dir=str(check.workdir / f"speed-{name}-{variant}-{time.monotonic_ns()}"),
        **({"num_threads": 1} if check.cpu else {}),
    )
    reset_peak_memory()
    syncs = None
    if count_syncs and torch.cuda.is_available():
        run_dir, syncs = with_sync_count(lambda: run_training(config), check)
    else:
        run_dir = run_training(config)
    windows = [w for w in logged_windows(run_dir) if w["step"] > check.warmup] or logged_windows(run_dir)[-1:]
    rate = statistics.median(w["samples_per_second"] for w in windows)
    wait = statistics.median(w["data_wait_fraction"] for w in windows)
    return rate, wait, peak_memory_mib(), syncs


def with_sync_count(train, check):
    """Run `train` with every host-device sync warned about; the syncs between consecutive optimizer steps,
    leaving out the warm-up and the intervals holding a logging step (which reads the logged figures)."""
    marks, recorded = [], []
    decide = StepGuard.decide

    def marked(self, *args, **kwargs):
        marks.append(len(recorded))
        return decide(self, *args, **kwargs)

    StepGuard.decide = marked
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            run_dir = train()
    finally:
        torch.cuda.set_sync_debug_mode(0)
        StepGuard.decide = decide
    # marks[i] is taken at step i+1's decision; the interval up to the next one holds step i+1's logging.
    steady = [marks[i + 1] - marks[i] for i in range(check.warmup, len(marks) - 1) if (i + 1) % check.log_every]
    return run_dir, (max(steady) if steady else None)


def reset_peak_memory():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mib():
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def throughput(check, store, *, compiled):
    """Every model in every variant (compiled=False), or in the torch.compile ones (compiled=True: run last, as
    compilation takes minutes and is the first thing to leave out when time runs short)."""
    results = check.results.setdefault("throughput", [])
    for name in MODELS:
        for variant in [v for v in check.variants if ("compile" in v) == compiled]:
            if check.left() < (200 if "compile" in variant else 60):
                check.skip(f"throughput {name} {variant}", "time budget")
                continue
            count_syncs = name == "pan" and variant == "bf16_channels_last"
            try:
                toolkit, wait, toolkit_mib, syncs = toolkit_run(check, store, name, variant, count_syncs=count_syncs)
                reset_peak_memory()
                plain = statistics.median(
                    plain_loop(
                        name,
                        batch_size=check.batch_size(name),
                        accumulation=1,
                        lr_patch=check.lr_patch(name),
                        variant=variant,
                        steps=check.measured,
                        warmup=check.warmup,
                        device=check.device,
                        overrides=TINY[name] if check.cpu else None,
                    )
                )
                plain_mib = peak_memory_mib()
            except Exception as error:  # noqa: BLE001 (e.g. torch.compile without a working toolchain: report, go on)
                check.skip(
                    f"throughput {name} {variant}", f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
                )
                continue
            record = {
                "model": name,
                "variant": variant,
                "toolkit_samples_per_s": toolkit,
                "plain_samples_per_s": plain,
                "toolkit_over_plain": toolkit / plain,
                "data_wait_fraction": wait,
                "toolkit_peak_mib": toolkit_mib,
                "plain_peak_mib": plain_mib,
            }
            results.append(record)
            memory = f", peak {toolkit_mib:.0f} / {plain_mib:.0f} MiB" if toolkit_mib is not None else ""
            check.row(
                "throughput",
                f"{name} {variant}",
                f"toolkit {toolkit:.1f} / plain {plain:.1f} samples/s "
                f"= {toolkit / plain:.2f}; data wait {wait:.1%}{memory}",
            )
            if syncs is not None:
                check.results["syncs_per_step"] = syncs
                check.row("syncs", "per optimizer step, steady state (PAN bf16 CL)", str(syncs))
    if "syncs_per_step" not in check.results and not compiled:
        check.results["syncs_per_step"] = None
        check.row("syncs", "per optimizer step", "not measured (needs CUDA: set_sync_debug_mode)")


# ---- degradations in the feed step ---------------------------------------------------------------------------


def degradations(check):
    """ms per batch of the Degrader on the device, and its share of the PAN step (throughput's best variant)."""
    if check.left() < 30:
        check.skip("degrade", "time budget")
        return
    batch, side, scale = check.batch_size("pan"), check.lr_patch("pan") * 4, 4
    degrader = Degrader(options=DegradeOptions(), scale=scale, seed=0)
    hr = torch.rand(batch, 3, side, side, device=check.device)
    times = []
    for step in range(check.warmup + check.measured):
        if check.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        degrader(hr, range(step * batch, (step + 1) * batch))
        if check.device == "cuda":
            torch.cuda.synchronize()
        if step >= check.warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    record = {"batch": batch, "hr_side": side, "ms_per_batch": 1000 * seconds}
    pan = [r for r in check.results.get("throughput", []) if r["model"] == "pan"]
    figure = f"{1000 * seconds:.1f} ms per batch of {batch} x {side}x{side}"
    if pan:
        best = max(pan, key=lambda r: r["toolkit_samples_per_s"])
        step_seconds = batch / best["toolkit_samples_per_s"]
        record.update(step_variant=best["variant"], share_of_step=seconds / (seconds + step_seconds))
        figure += f"; {record['share_of_step']:.1%} of a PAN {best['variant']} step with it"
    check.results["degrade"] = record
    check.row("degrade", "Degrader, default options, on the device", figure)


# ---- FLOPs and the share of the peak --------------------------------------------------------------------------


def flops(check):
    from torch.utils.flop_counter import FlopCounterMode

    gpu = check.results["machine"]["gpu"] or ""
    peak = next((value for key, value in BF16_PEAK.items() if key in gpu), None)
    out = check.results.setdefault("flops", {})
    for name in MODELS:
        model = create_model(name, scale=4, **(TINY[name] if check.cpu else {})).to(check.device)
        lr = torch.rand(1, 3, check.lr_patch(name), check.lr_patch(name), device=check.device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(lr).float().mean().backward()
        per_sample = counter.get_total_flops()
        rates = [r["toolkit_samples_per_s"] for r in check.results.get("throughput", []) if r["model"] == name]
        best = max(rates) if rates else None
        share = per_sample * best / peak if best and peak else None
        steps_1m = 1e6 * check.batch_size(name) / best / 3600 if best else None
        out[name] = {
            "flops_per_sample": per_sample,
            "best_toolkit_samples_per_s": best,
            "bf16_peak_flops": peak,
            "share_of_peak": share,
            "hours_for_1M_steps": steps_1m,
        }
        figure = f"{per_sample / 1e9:.2f} GFLOP per sample (fwd + bwd)"
        if share is not None:
            figure += f"; best {best:.0f} samples/s = {share:.1%} of {peak / 1e12:.0f} TFLOPS bf16"
        elif best:
            figure += f"; best {best:.0f} samples/s (peak of this device unknown)"
        if steps_1m and name == "pan":
            figure += f"; 1M steps of batch {check.batch_size(name)}: {steps_1m:.1f} h"
        check.row("flops", name, figure)


# ---- scaling on the CPU ---------------------------------------------------------------------------------------


def scaling(check, store):
    out = check.results.setdefault("cpu_scaling", [])
    for processes in check.processes:
        if processes > check.results["machine"]["cpu_cores"]:
            check.skip(f"cpu scaling {processes} processes", "more processes than cores")
            continue
        if check.left() < 45:
            check.skip(f"cpu scaling {processes} processes", "time budget")
            continue
        run_dir = check.workdir / f"cpu-ddp-{processes}"
        args = [
            "--recipe",
            "quickstart",
            "--dataset",
            str(store),
            "--steps",
            "5",
            "--log-every",
            "1",
            "--val-dataset",
            "none",
            "--save-every",
            "0",
            "--progress",
            "false",
            "--log-with",
            "none",
            "--batch-size",
            "4",
            "--lr-patch-size",
            "16" if check.cpu else "32",
            "--repeat-images",
            "true",
            "--output-dir",
            str(run_dir),
            *(["--model-overrides", json.dumps(TINY["pan"])] if check.cpu else []),
        ]
        code, tail = launch(
            "launch_configs/cpu_ddp.yaml",
            *args,
            processes=processes,
            env={"CUDA_VISIBLE_DEVICES": ""},
            timeout=max(30, check.left() - 10),
        )
        if code != 0:
            error = [line for line in tail.splitlines() if line.startswith("error") or "Error" in line] or [tail[-100:]]
            check.skip(f"cpu scaling {processes} processes", f"failed: {error[-1][:120]}")
            continue
        windows = logged_windows(run_dir)[2:]  # the first steps build thread pools and gloo buffers
        rate = statistics.median(w["samples_per_second"] for w in windows)
        start = json.loads((run_dir / "log.jsonl").read_text().splitlines()[0])  # auto: bf16 only on a native CPU
        out.append({"processes": processes, "samples_per_s": rate, "mixed_precision": start["mixed_precision"]})
        base = out[0]["samples_per_s"]
        check.row(
            "cpu scaling",
            f"{processes} process(es), {start['mixed_precision']}, batch 4 each",
            f"{rate:.1f} samples/s ({rate / base:.2f}x one process)",
        )


# ---- goals and the table --------------------------------------------------------------------------------------


def goals(check):
    """The issue's GPU goals for PAN pan_x4_paper bf16 (meaningful on a GPU only)."""
    pan = {r["variant"]: r for r in check.results.get("throughput", []) if r["model"] == "pan"}
    best = max(pan.values(), key=lambda r: r["toolkit_samples_per_s"]) if pan else None
    verdicts = {}
    if best and "eager" in pan:
        verdicts["best variant >= 3x fp32 eager"] = (
            best["toolkit_samples_per_s"] / pan["eager"]["toolkit_samples_per_s"]
        )
    if best:
        verdicts["toolkit >= 0.95x plain (best variant)"] = best["toolkit_over_plain"]
        verdicts["data wait < 5% (best variant)"] = best["data_wait_fraction"]
    limits = {
        "best variant >= 3x fp32 eager": lambda v: v >= 3,
        "toolkit >= 0.95x plain (best variant)": lambda v: v >= 0.95,
        "data wait < 5% (best variant)": lambda v: v < 0.05,
    }
    syncs = check.results.get("syncs_per_step")
    if syncs is not None:
        verdicts["<= 1 host sync per optimizer step"] = syncs
        limits["<= 1 host sync per optimizer step"] = lambda v: v <= 1
    check.results["goals"] = {k: {"value": v, "met": bool(limits[k](v))} for k, v in verdicts.items()}
    for key, value in check.results["goals"].items():
        check.row(
            "goal",
            key,
            f"{value['value']:.3g}: {'met' if value['met'] else 'NOT met'}"
            + (" (CPU shrink: not the GPU goal)" if check.cpu else ""),
        )


def print_table(check):
    width = max(len(item) for _, item, _ in check.rows)
    print("\n" + "=" * 100)
    print(
        f"gpu_check on {check.results['machine']['gpu'] or 'CPU only (--cpu)'}, torch {torch.__version__}, "
        f"{check.results['machine']['cpu_cores']} CPU cores"
    )
    print(f"{'section':<12} {'what':<{width}}  figure")
    for section, item, figure in check.rows:
        print(f"{section:<12} {item:<{width}}  {figure}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="shrink everything and run on the CPU (checks the script)")
    parser.add_argument("--budget-s", type=float, default=450, help="stop starting new work after this long")
    parser.add_argument("--workdir", help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--sections", nargs="+", default=["correctness", "throughput", "degrade", "flops", "scaling"])
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("error: no CUDA device visible; on a machine without one, run with --cpu (a shrunk check)")
    with tempfile.TemporaryDirectory() as temporary:
        args.workdir = args.workdir or temporary
        check = Check(args)
        print(f"{'section':<12}{'what':<44}figure")
        store = prepare_store(check)
        # The order is the priority when time runs short.
        if "correctness" in args.sections:
            correctness(check, store)
        if "throughput" in args.sections:
            throughput(check, store, compiled=False)
        if "degrade" in args.sections:
            degradations(check)
        if "scaling" in args.sections:
            scaling(check, store)
        if "throughput" in args.sections:
            throughput(check, store, compiled=True)
        if "flops" in args.sections:
            flops(check)
        goals(check)
    print_table(check)
    check.save()
    print(f"figures: {check.out / 'gpu_check.json'}")
    failed = [c["precision"] for c in check.results.get("correctness", []) if not c["ok"]]
    if failed:
        sys.exit(f"error: correctness failed for {', '.join(failed)} (see above)")


if __name__ == "__main__":
    with user_errors():  # a bad file or option: one line, exit 1 (sr_models/errors.py)
        main()
