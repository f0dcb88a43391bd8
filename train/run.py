"""Train a super-resolution model with Hugging Face Accelerate.

    accelerate launch train/run.py            # recipe quickstart: PAN x4 on the built-in photos, offline
    accelerate launch --config_file launch_configs/multi_gpu.yaml train/run.py --recipe pan_x4_paper \
        --dataset /data/DF2K_sub
    python train/run.py --steps 50            # plain python: one process
    accelerate launch train/run.py --resume latest --output-dir runs/quickstart-20250101-120000

Reads top to bottom: config, accelerator, data, model, optimizer, loop, save. Steps are optimizer steps: one
step consumes batch_size x gradient_accumulation_steps x num_processes patches, and the learning-rate schedule
is written in these steps whatever the number of processes.

The run folder (--output-dir, default runs/<recipe>-<date>-<time>) receives config.yaml, log.jsonl (every
logged figure, one JSON object a line), tensorboard/ (when TensorBoard is installed), samples/ (comparison
images), checkpoints/, model.safetensors (the EMA weights when EMA is on) and metrics.json.
"""

import hashlib
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from sr_models.starting import stop_while_starting

if __name__ == "__main__":  # before the imports below (seconds); StopSignals takes over once the run starts
    stop_while_starting()

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import (
    DataLoaderConfiguration,
    ProjectConfiguration,
    TorchDynamoPlugin,
    broadcast_object_list,
    gather_object,
    is_tensorboard_available,
    set_seed,
)
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from sr_models import create_model
from sr_models.errors import UserError, launch_has_said_an_error, user_errors
from sr_models.files import OutputError, atomic_write_text, claim_output, open_append
from sr_models.weights import load_model, save_weights
from train.checkpoint import Progress, latest_checkpoint, load_checkpoint, resume_options, run_dir_of, save_checkpoint
from train.config import ConfigError, parse_args, refuse_resume_changes, save_config
from train.cpu_memory import keep_freed_memory
from train.data import check_enough_images, resolve_lr_mode, training_loader, training_patches, validation_sets
from train.degrade.training import PREVIEW_FILE, DrawnWindow, degraded_sets, make_degrader, write_preview
from train.feedback import Validator, cap_workers, left_out_lines, log_interval
from train.init_weights import describe as describe_init
from train.init_weights import init_weights
from train.losses import LOSSES, WeightedLoss  # LOSSES is also train.run.LOSSES: the fault suite swaps a loss in there
from train.memory_bound import memory_error
from train.optim import make_optimizer, make_scheduler
from train.precision import choose as choose_precision
from train.run_folder import RunFolderLock
from train.step_guard import StepGuard
from train.threads import ThreadTuner, set_cpu_threads
from train.validation import validation_scorer


def main(argv=None):
    """Train as the command line says; the run folder's lock is let go however the run ends."""
    try:
        return train(parse_args(argv))
    finally:
        RunFolderLock.release_all()


def train(config):
    """Train as `config` (a TrainConfig: parse_args, load_recipe) says; returns the run folder. The run folder stays
    locked until RunFolderLock.release_all() (main calls it)."""
    # ---- config ---------------------------------------------------------------------------------------------
    refuse_resume_changes(config)  # a config built in code keeps to the rule --resume's overrides keep to

    # ---- accelerator ----------------------------------------------------------------------------------------
    # cpu=True without a GPU is also what lets launch_configs/cpu_ddp.yaml (MULTI_GPU type) start 2 gloo
    # processes on a CPU-only machine (docs/training.md, launch configs).
    use_cpu = not torch.cuda.is_available()
    state = PartialState(cpu=use_cpu)
    threads = set_cpu_threads(config.num_threads, device=state.device)
    heap_reuse = state.device.type == "cpu" and keep_freed_memory()  # train/cpu_memory.py: fewer page faults
    refusal = memory_error(config, device=state.device, workers=config.num_workers)  # train/memory_bound.py
    if refusal:  # before the run folder: nothing is written
        raise ConfigError(refusal)
    run_dir = choose_run_dir(config, state)
    STOP.run_dir = run_dir
    # auto: the fastest precision this device computes natively (train/precision.py); the reason is logged.
    precision = choose_precision(config.mixed_precision, device_type=state.device.type)
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=precision.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        # Accelerate would step a prepared scheduler num_processes times per optimizer step (it assumes the
        # schedule counts single-process batches). Our steps are optimizer steps, so we step it ourselves, once.
        step_scheduler_with_optimizer=False,
        log_with=trackers(config.log_with),
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "tensorboard")),
        dynamo_plugin=TorchDynamoPlugin(backend="inductor") if config.compile else None,
        dataloader_config=DataLoaderConfiguration(non_blocking=not use_cpu),  # copies overlap compute (pinned)
    )
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not config.resume:  # a resumed run's is written once its checkpoint is accepted: a refusal changes nothing
            save_config(config, run_dir / "config.yaml")
    accelerator.init_trackers(run_dir.name, config=hparams(config))
    if precision.warning:
        accelerator.print(precision.warning)
    log = RunLog(run_dir / "log.jsonl", accelerator)

    # ---- data -----------------------------------------------------------------------------------------------
    accumulation, processes = config.gradient_accumulation_steps, accelerator.num_processes
    samples_per_step = config.batch_size * accumulation * processes
    # The config keeps what was asked for (a resumed run on a larger machine gets it); this machine gets what it has.
    workers, note = cap_workers(config.num_workers, processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if note:
        accelerator.print(note)
    with accelerator.main_process_first():  # the main process fills the datasets caches; the others read them
        patches, left_out = training_patches(config, length=config.steps * samples_per_step)
        lr_mode = resolve_lr_mode(config, patches.pairs)  # bicubic | degrade | paired
        held_out = validation_sets(config) if accelerator.is_main_process else {}
        perceptual = validation_scorer(config, accelerator.device) if held_out else None  # --val-metrics
    # lr_mode degrade: each batch's LR is drawn from its HR in the feed step, on the training device (below).
    degrader = make_degrader(config) if lr_mode == "degrade" else None
    if config.degradations and degrader is None:
        accelerator.print(f"note: degradations ignored: lr_mode is {lr_mode} (they apply with lr_mode degrade)")
    if degrader is not None and held_out:  # beside the clean sets: each degraded once, with a fixed seed
        held_out = degraded_sets(held_out, config)
    check_enough_images(
        patches,
        processes=processes,
        batch_size=config.batch_size,
        repeat_images=config.repeat_images,
        label=config.dataset,
    )
    train_loader = training_loader(
        patches,
        batch_size=config.batch_size,
        num_workers=workers,
        persistent_workers=config.persistent_workers,
        pin_memory=not use_cpu,
    )

    validator = Validator(
        held_out,
        run_dir=run_dir,
        scale=config.scale,
        preview_images=config.preview_images,
        accelerator=accelerator,
        log=log,
        perceptual=perceptual,
    )
    for line in left_out_lines(left_out):
        accelerator.print(line)

    # ---- model ----------------------------------------------------------------------------------------------
    set_seed(config.seed)  # the initial weights depend on the seed only (DDP also copies rank 0's to the others)
    model = create_model(config.model, scale=config.scale, **config.model_overrides)
    initial = None
    if config.init_weights and not config.resume:  # a resumed run's weights come from its checkpoint
        initial = init_weights(model, config.init_weights, strict=config.init_strict)
        accelerator.print(describe_init(initial))
    if config.sync_batchnorm:
        model = with_sync_batchnorm(model, accelerator)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # EMA: a copy made before `prepare`, so it is never wrapped, compiled or autocast: it runs in fp32.
    ema = None
    if config.ema_decay:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)

    # ---- optimizer and learning-rate schedule ---------------------------------------------------------------
    optimizer = make_optimizer(config, model.parameters())
    scheduler = make_scheduler(config, optimizer)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    progress = Progress()
    if ema is not None:
        ema.to(accelerator.device)
    checkpointed = [progress] + ([ema] if ema is not None else [])
    accelerator.register_for_checkpointing(*checkpointed)

    # ---- resume ---------------------------------------------------------------------------------------------
    resumed_from = None
    if config.resume:  # verified before it is loaded (train/checkpoint.py)
        resumed_from = load_checkpoint(
            accelerator, config.resume, run_dir=run_dir, model=model, optimizer=optimizer, registered=len(checkpointed)
        )
        if accelerator.is_main_process:
            save_config(config, run_dir / "config.yaml")
        accelerator.print(f"resumed from {resumed_from} at step {progress.step}")
    start_step = progress.step
    preview = run_dir / PREVIEW_FILE if degrader is not None else None  # a resumed run's is there already
    if degrader is not None and accelerator.is_main_process and not start_step:
        write_preview(preview, patches, degrader)
        accelerator.print(f"degradations: the first patches as the network sees them: {preview}")
    # Patches are a pure function of their position in the run, so skipping the micro-batches already used
    # puts the resumed run on exactly the data of an uninterrupted one.
    batches = accelerator.skip_first_batches(train_loader, start_step * accumulation) if start_step else train_loader

    log.write(
        {
            "event": "start",
            "step": start_step,
            "num_processes": processes,
            "process_index": accelerator.process_index,
            "distributed_type": str(accelerator.distributed_type),
            "device": str(accelerator.device),
            "mixed_precision": accelerator.mixed_precision,
            "mixed_precision_reason": precision.reason,
            "cpu_threads": threads,
            "samples_per_step": samples_per_step,
            "train_images": len(patches.usable),
            "left_out_small": left_out["small"],
            "left_out_corrupt": left_out["corrupt"],
            "held_out_images": validator.image_count,
            "val_sets": list(held_out),
            "left_out_files": left_out["small_names"] + left_out["corrupt_names"],
            "resumed_from": str(resumed_from) if resumed_from else None,
            "run_dir": str(run_dir),
            "heap_reuse": heap_reuse,
            "lr_mode": lr_mode,
            **({"degradations": degrader.options.as_dict(), "degradation_preview": str(preview)} if degrader else {}),
            **(initial or {}),
        },
        to_trackers=False,
    )
    accelerator.print(
        f"{config.model} x{config.scale} | {len(patches.usable)} training images, {validator.image_count} held out | "
        f"{processes} process(es) on {accelerator.device}, {threads} CPU thread(s) each | mixed precision "
        f"{accelerator.mixed_precision} ({precision.reason}) | {samples_per_step} "
        f"patches per step ({config.batch_size} x {accumulation} x {processes}) | run folder {run_dir}"
    )

    # ---- loop -----------------------------------------------------------------------------------------------
    loss_fn = WeightedLoss(config.losses, registry=LOSSES).to(accelerator.device)  # sum of weight x loss

    def unwrap(model):  # the plain module: no DDP, no compile wrapper (its parameters are the trained ones)
        return accelerator.unwrap_model(model, keep_torch_compile=False)

    bar = tqdm(
        total=config.steps,
        initial=start_step,
        desc="training",
        dynamic_ncols=True,
        unit="step",
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA {remaining}, {rate_fmt}{postfix}]",
        disable=not (accelerator.is_main_process and config.progress),
    )
    log_every = log_interval(config)
    window = Window(accelerator.device)
    drawn = DrawnWindow()  # what the degradations drew, summarised per log line (lr_mode degrade)
    train_seconds, train_samples = 0.0, 0
    # Auto threads on a CPU: keep checking whether all cores or one is faster (see train/threads.py).
    tuner = ThreadTuner(threads=threads) if config.num_threads == 0 and threads > 1 else None
    if tuner:
        tuner.start()
    model.train()
    guard = StepGuard(accelerator.device)  # NaN/inf losses, counted on the device; read once per optimizer step
    tick = time.perf_counter()
    for batch in batches:
        window.data_seconds += time.perf_counter() - tick
        with accelerator.accumulate(model):
            lr_images, hr_images = as_float(batch["lr"], config.channels_last), as_float(batch["hr"], False)
            if degrader is not None:  # the LR drawn from the HR, on this device; bicubic_share keeps the bicubic one
                lr_images, parameters = degrader(hr_images, batch["index"].tolist(), bicubic_lr=lr_images)
                lr_images = (
                    lr_images.contiguous(memory_format=torch.channels_last) if config.channels_last else lr_images
                )
                drawn.add(parameters)
            sr_images = model(lr_images)  # (B, 3, p*scale, p*scale)
            loss = loss_fn(sr_images.float(), hr_images)
            # A NaN/inf loss skips the whole optimizer step, on every process alike (train/step_guard.py): every
            # process runs its backward, and the step is decided once, at the optimizer step, not per micro-batch
            # (no host sync per micro-batch). (fp16's grad scaler goes on skipping, by itself, the steps whose
            # gradients overflow while the loss is finite.)
            guard.add(loss)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                step_is_finite, stop_requested = guard.decide(accelerator, stop_requested=STOP.received is not None)
                if step_is_finite:
                    if config.grad_clip:
                        window.grad_norm = accelerator.clip_grad_norm_(
                            model.parameters(), config.grad_clip
                        )  # before clipping
                    optimizer.step()
            optimizer.zero_grad(set_to_none=True)  # a skipped step's poisoned gradients go too
        window.add(loss.detach(), batch["skipped"])
        if not accelerator.sync_gradients:  # a micro-batch inside an accumulation: no optimizer step yet
            tick = time.perf_counter()
            continue

        # One optimizer step has been taken.
        step_lr = optimizer.param_groups[0]["lr"]  # the rate this step used
        scheduler.step()
        if ema is not None and step_is_finite:  # a skipped step leaves the weights, and so their average, as they were
            ema.update_parameters(unwrap(model))
        progress.step += 1
        window.steps += 1
        if tuner:
            threads = tuner.step_done()
        bar.update(1)
        step = progress.step
        if step_is_finite:
            progress.nonfinite_in_a_row = 0
        else:
            progress.nonfinite_steps += 1
            progress.nonfinite_in_a_row += 1
            accelerator.print(
                f"warning: step {step}: NaN or infinite loss, update skipped "
                f"({progress.nonfinite_in_a_row} in a row, {progress.nonfinite_steps} in all)"
            )
            if progress.nonfinite_in_a_row >= config.max_nonfinite_steps:
                raise diverged(progress, run_dir)

        if step % log_every == 0 or step == config.steps or step == config.stop_after:
            seconds = window.seconds()
            figures = window.reduce(accelerator)
            progress.skipped_images += figures.pop("skipped")
            train_seconds += seconds
            train_samples += window.steps * samples_per_step
            record = {
                "step": step,
                "loss": figures["loss"],
                "lr": step_lr,
                "samples_per_second": window.steps * samples_per_step / seconds,
                "data_wait_fraction": figures["data_seconds"] / seconds,
                "epoch": step * samples_per_step / len(patches.usable),
                "skipped_images": progress.skipped_images,
                "cpu_threads": threads,
                "nonfinite_steps": progress.nonfinite_steps,
            }
            if record["loss"] is None:  # every micro-batch of the window was skipped: no loss to report
                del record["loss"]
            if degrader is not None:
                record["degradations"] = drawn.summary()  # this process's patches of the window
            if config.grad_clip and window.grad_norm is not None:  # None: every step of the window skipped
                record["grad_norm"] = window.grad_norm.item()  # of the last step in the window
            log.write(record, step=step)
            bar.set_postfix(
                loss=f"{record.get('loss', float('nan')):.4f}",
                lr=f"{step_lr:.2e}",
                samples_per_s=f"{record['samples_per_second']:.1f}",
            )
            window = Window(accelerator.device)

        if config.val_every and step % config.val_every == 0 and step < config.steps:
            paused = time.perf_counter()
            if validator:  # main process only; the others wait at the barrier below
                validator(ema.module if ema else unwrap(model), step=step, device=accelerator.device)
            accelerator.wait_for_everyone()
            window.exclude(time.perf_counter() - paused)
            if tuner:
                tuner.restart_timer()

        # No periodic checkpoint inside a run of skipped steps: the last one saved stays the last good one.
        if (
            config.save_every
            and step % config.save_every == 0
            and step < config.steps
            and not progress.nonfinite_in_a_row
        ):
            paused = time.perf_counter()
            save_checkpoint(accelerator, run_dir=run_dir, step=step, config=config, keep=config.keep_checkpoints)
            window.exclude(time.perf_counter() - paused)
            if tuner:
                tuner.restart_timer()

        if stop_requested and step < config.steps:  # SIGTERM/SIGINT (agreed in guard.decide): save, then stop
            saved = save_checkpoint(
                accelerator, run_dir=run_dir, step=step, config=config, keep=config.keep_checkpoints
            )
            bar.close()
            accelerator.end_training()
            signum = STOP.received or signal.SIGTERM  # a process the signal has not reached yet stops with the rest
            raise Interrupted(
                signum,
                f"stopped by {signal.Signals(signum).name} after step {step}, state saved in "
                f"{saved}; continue with: {resume_options(run_dir)}",
            )

        if step == config.stop_after and step < config.steps:
            save_checkpoint(accelerator, run_dir=run_dir, step=step, config=config, keep=config.keep_checkpoints)
            accelerator.print(f"stopped after step {step} (stop_after); continue with: {resume_options(run_dir)}")
            bar.close()
            accelerator.end_training()
            return run_dir
        if step >= config.steps:
            break
        tick = time.perf_counter()
    bar.close()

    # ---- save -----------------------------------------------------------------------------------------------
    save_checkpoint(accelerator, run_dir=run_dir, step=progress.step, config=config, keep=config.keep_checkpoints)
    final_model = ema.module if ema is not None else unwrap(model)
    # Every process must hold the same weights after DDP; a mismatch would mean a broken all-reduce.
    digests = gather_object([weights_digest(final_model)])
    log.write({"event": "end", "step": progress.step, "weights_digest": digests}, to_trackers=False)
    if len(set(digests)) > 1:
        accelerator.print(f"warning: the processes ended with different weights: {digests}")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_weights(final_model, run_dir / "model.safetensors")
        samples_per_second = train_samples / train_seconds if train_seconds else None
        metrics = {
            "psnr_y": None,
            "ssim_y": None,
            "bicubic_psnr_y": None,
            "bicubic_ssim_y": None,
            "steps": progress.step,
            "samples_per_second": samples_per_second,
        }
        if validator:
            # The final figures are those of the saved file, in fp32: what train/evaluate.py will report.
            shipped = load_model(run_dir / "model.safetensors").to(accelerator.device)
            metrics.update(
                validator.final(shipped, step=progress.step, device=accelerator.device, say=accelerator.print)
            )
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        accelerator.print(f"weights: {run_dir / 'model.safetensors'}  metrics: {run_dir / 'metrics.json'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


# ---------------------------------------------------------------------------------------------------------------
# Small pieces used above, in the order they appear.


def choose_run_dir(config, state):
    """The run folder, the same in every process (the main process picks the time stamp), locked by the main
    process (train/run_folder.py: a new run needs an empty folder; a resumed one continues in its own)."""
    if config.resume and config.resume != "latest":
        run_dir = run_dir_of(config.resume)
        if config.output_dir and Path(config.output_dir).resolve() != run_dir:
            raise ConfigError(
                f"--resume {config.resume} continues the run in its own folder {run_dir}, not in "
                f"--output-dir {config.output_dir}: drop --output-dir"
            )
    elif config.output_dir:
        run_dir = Path(config.output_dir)
    elif config.resume == "latest":
        raise ConfigError("--resume latest needs --output-dir: the run folder to continue")
    else:
        stamp = [datetime.now().strftime("%Y%m%d-%H%M%S")]
        if state.num_processes > 1:
            broadcast_object_list(stamp)  # from the main process: clocks may tick between the processes' starts
        run_dir = Path("runs") / f"{config.recipe}-{stamp[0]}"
    problem = [None]
    if state.is_main_process:
        try:
            if not config.resume:  # a new run folder never is, holds or lies inside a folder the run reads
                readings = (config.dataset, config.lr_dataset, config.val_dataset, config.init_weights)
                claim_output(
                    run_dir,
                    inputs=[p for p in readings if p and p not in ("builtin", "none")],
                    kind="folder",
                    lock=False,
                )
            RunFolderLock(run_dir, new_run=not config.resume)  # held until main() returns
        except (ConfigError, OutputError) as error:
            problem = [str(error)]
    if state.num_processes > 1:
        broadcast_object_list(problem)  # every process stops alike, none waits at a barrier for the main one
    if problem[0]:
        raise ConfigError(problem[0])
    return run_dir


def trackers(log_with):
    if log_with == "none":
        return None
    if log_with == "auto":
        return ["tensorboard"] if is_tensorboard_available() else None
    if log_with == "tensorboard" and not is_tensorboard_available():
        raise ConfigError(
            "--log-with tensorboard: TensorBoard is not installed; pip install tensorboard, or pass "
            "--log-with none (the figures still go to log.jsonl)"
        )
    return [log_with]


def hparams(config):
    """The config as trackers accept it: scalars and strings only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_dict().items()}


class RunLog:
    """Every logged figure as one JSON line in the run folder (main process), and to the trackers."""

    def __init__(self, path, accelerator):
        self.path, self.accelerator = Path(path), accelerator

    def write(self, record, *, step=None, to_trackers=True):
        if self.accelerator.is_main_process:
            with open_append(self.path) as f:  # never through a link planted in the run folder
                f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
        if to_trackers:
            numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
            self.accelerator.log(numbers, step=step)


def with_sync_batchnorm(model, accelerator):
    """BatchNorm statistics over the whole global batch instead of each process's share."""
    if accelerator.num_processes == 1:
        accelerator.print("note: sync_batchnorm has no effect with one process")
        return model
    if accelerator.device.type == "cpu":
        raise ConfigError("sync_batchnorm: PyTorch's SyncBatchNorm runs on GPUs only, not on CPU processes")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def as_float(images, channels_last):
    """uint8 (B, 3, H, W) on the device -> float in [0, 1]; batches travel as uint8 (4x less to copy)."""
    images = images.float().div_(255)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


class TrainingDiverged(UserError):
    """Too many optimizer steps in a row with a NaN/inf loss (config.max_nonfinite_steps)."""


def diverged(progress, run_dir):
    first = progress.step - progress.nonfinite_in_a_row + 1
    latest = latest_checkpoint(run_dir)
    return TrainingDiverged(
        f"training diverged: the loss was NaN or infinite for {progress.nonfinite_in_a_row} optimizer steps in a "
        f"row (steps {first}-{progress.step}, max_nonfinite_steps); no update since step {first - 1}; last good "
        f"checkpoint: {latest or 'none'}. Lower --lr or set --grad-clip, then resume from it"
    )


class Interrupted(Exception):
    """The run was asked to stop (SIGTERM/SIGINT) and saved its state."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = int(signum)


class StopSignals:
    """SIGTERM (a scheduler's preemption), SIGINT (Ctrl-C) and SIGHUP (a closed terminal) ask the loop to save and
    stop at the next optimizer step; a second signal stops at once, even in the middle of that save: the checkpoint
    being written is still a `.partial` folder, which is never resumed from, so the last complete one stays the one
    to continue from; one line says which. Installed only when train/run.py is the program (not in tests). Every
    process must stop at the same step (the signal reaches them at different times), or the ones still training
    would wait forever in the next all-reduce: StepGuard.decide agrees on it with the NaN check's all-reduce."""

    # A launcher passes the signal on, and a terminal sends it to the whole group: one Ctrl-C can arrive twice within
    # milliseconds. A second signal means "stop at once" only when it comes this much later.
    REPEAT_AFTER_S = 1.0

    def __init__(self):
        self.received = None
        self.received_at = None
        self.run_dir = None  # set once the run folder is known: the second signal's line names its checkpoint

    def install(self):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: the terminal or ssh session closed
            signal.signal(signum, self.handle)

    def handle(self, signum, frame):
        if self.received is not None:  # asked twice: no more waiting, and no traceback from wherever we were
            if time.monotonic() - self.received_at < self.REPEAT_AFTER_S:
                return  # the first request, delivered again
            if int(os.environ.get("RANK", "0")) == 0:  # every process got it: one line says so
                latest = latest_checkpoint(self.run_dir) if self.run_dir else None
                resume = f"; continue with: {resume_options(self.run_dir)}" if latest else ""
                sys.stderr.write(
                    f"\nerror: stopped at once by a second {signal.Signals(signum).name}; last complete "
                    f"checkpoint: {latest or 'none'}{resume}\n"
                )
                sys.stderr.flush()
            os._exit(128 + signum)
        self.received = signum
        self.received_at = time.monotonic()


STOP = StopSignals()


class Window:
    """Figures accumulated between two log lines."""

    def __init__(self, device):
        # Sums stay on the device: reading them every micro-batch would wait for the GPU each time.
        self.loss = torch.zeros((), device=device)
        self.skipped = torch.zeros((), device=device, dtype=torch.int64)
        self.micro_batches = torch.zeros((), device=device)  # those with a finite loss
        self.steps = 0
        self.data_seconds = 0.0
        self.excluded = 0.0
        self.grad_norm = None
        self.start = time.perf_counter()

    def add(self, loss, skipped):
        finite = torch.isfinite(loss)  # a NaN/inf loss would poison the logged mean: left out, on the device
        self.loss += torch.where(finite, loss, 0.0)
        self.micro_batches += finite
        self.skipped += skipped.sum()

    def exclude(self, seconds):
        """Time spent validating or checkpointing: not training time."""
        self.excluded += seconds

    def seconds(self):
        return time.perf_counter() - self.start - self.excluded

    def reduce(self, accelerator):
        """Mean loss over all processes' micro-batches, summed skips, the slowest process's data wait."""
        figures = torch.tensor(
            [self.loss.item(), self.micro_batches.item(), self.skipped.item(), self.data_seconds],
            dtype=torch.float64,
            device=accelerator.device,
        )
        gathered = accelerator.gather(figures[None]).cpu()  # (processes, 4)
        counted = gathered[:, 1].sum().item()  # micro-batches with a finite loss
        return {
            "loss": gathered[:, 0].sum().item() / counted if counted else None,
            "skipped": int(gathered[:, 2].sum()),
            "data_seconds": gathered[:, 3].max().item(),
        }


def weights_digest(model):
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    STOP.install()
    try:
        with user_errors():  # ConfigError, ImageError, WeightsError, CheckpointError, ...: one line, exit 1
            main()
    except Interrupted as stopped:
        if int(os.environ.get("RANK", "0")) == 0:  # every process stopped at the same step: one line says so
            print(f"error: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signum)  # the shell's convention for "ended by signal N"
    except RuntimeError:  # torch.distributed's errors: a peer that stopped on its own error broke the collective
        if launch_has_said_an_error():
            sys.exit(1)
        raise
