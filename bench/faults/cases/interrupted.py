"""Interrupted runs: SIGKILL mid-run and while a checkpoint is written, SIGTERM, SIGHUP and a second Ctrl-C (each
resumed with --resume latest and compared with an uninterrupted run, exactly); a loss that turns NaN; and, with
launch_configs/cpu_ddp.yaml, an exception or a NaN in one of two processes, a SIGTERM to the launcher."""

import os
import signal
import time

from bench.faults.case import scripted
from bench.faults.commands import injected
from bench.faults.harness import (
    TIMEOUT,
    Outcome,
    Result,
    describe_failure,
    error_line,
    read_log,
    read_text,
    run,
    shorten,
    start,
    wait_for,
)


def killed_and_resumed(s):
    """SIGKILL as soon as the first checkpoint is complete, while the run goes on."""
    case = "SIGKILL mid-run"
    started = time.perf_counter()
    process, run_dir = s.start_training("killed")
    wait_for(process, lambda: (run_dir / "checkpoints" / "step-00000002").is_dir())  # the first complete one
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return s.resume_and_compare(case, "killed", started, why="killed after the step-2 checkpoint")


def killed_while_saving(s):
    """SIGKILL between writing the step-4 checkpoint's files and renaming its folder complete."""
    case = "SIGKILL while a checkpoint is being written"
    started = time.perf_counter()
    process, run_dir = s.start_training("killed-saving", injection=["kill-while-saving"])
    process.communicate(timeout=TIMEOUT)
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    if process.returncode != -signal.SIGKILL or names != ["step-00000002", "step-00000004.partial"]:
        return Result(
            case,
            "train/run.py",
            "other",
            f"expected a kill with a .partial folder, got exit {process.returncode} and {names}",
            time.perf_counter() - started,
        )
    return s.resume_and_compare(
        case, "killed-saving", started, why="the half-written step-4 folder stays `.partial` and is never resumed from"
    )


def terminated(s):
    """SIGTERM (a scheduler's preemption) once step 1 is logged: save a final state and exit non-zero."""
    case = "SIGTERM mid-run"
    started = time.perf_counter()
    process, run_dir = s.start_training("terminated")
    wait_for(process, lambda: '"step": 1,' in read_text(run_dir / "log.jsonl"))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
    line = error_line(outcome)
    if process.returncode != 128 + signal.SIGTERM or not line or "stopped by SIGTERM" not in line:
        return Result(case, "train/run.py", "other", f"no saved stop: {describe_failure(outcome)}", outcome.seconds)
    return s.resume_and_compare(
        case,
        "terminated",
        started,
        why=f"saves its state at the next step, exits "
        f"{process.returncode} with `error: stopped by SIGTERM after step N, state "
        "saved in ...; continue with: --resume latest ...`",
    )


def diverging(s):
    """A loss that turns NaN at step 3 for good: skipped steps, then a clear stop with the good checkpoint."""
    case = "NaN loss from step 3 on (max_nonfinite_steps 3)"
    where = "train/run.py"
    started = time.perf_counter()
    process, run_dir = s.start_training("diverging", injection=["nan-loss", "3-"], extra=["--max-nonfinite-steps", "3"])
    _, stderr = process.communicate(timeout=TIMEOUT)
    outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
    line = error_line(outcome)
    if not line or "diverged" not in line:
        return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
    from train.config import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None or latest.name != "step-00000002":
        return Result(
            case, where, "lost", f"latest checkpoint {latest}, not the last good step-00000002", outcome.seconds
        )
    return Result(
        case,
        where,
        "handled",
        "steps 3-5 skipped and counted, then stopped with "
        f"`{shorten(line, str(s.root) + '/')[:120]}...`; step-2 checkpoint kept",
        outcome.seconds,
    )


# ---- two processes -------------------------------------------------------------------------------------------

DDP = "accelerate launch (cpu_ddp)"


def launch_two(s, name, mode):
    """`accelerate launch` with launch_configs/cpu_ddp.yaml (2 gloo processes) of train/run.py whose rank 1 has
    a fault at its second optimizer step: `raise` (an exception) or `nan` (a NaN loss in that rank only)."""
    command = s.c.train(name, "--dataset", s.good, "--val-dataset", "none", steps=4)
    return run(s.c.launch(injected("fault-in-rank-1", [mode, *command]))), s.c.run_dir(name)


def ddp_exception(s):
    case = "exception in rank 1 of 2 processes"
    outcome, _ = launch_two(s, "ddp-raise", "raise")
    if outcome.timed_out:
        return Result(case, DDP, "other", f"hung: still running after {TIMEOUT} s", outcome.seconds)
    if outcome.returncode == 0 or "injected fault in rank 1" not in outcome.stderr:
        return Result(case, DDP, "other", describe_failure(outcome), outcome.seconds)
    return Result(
        case,
        DDP,
        "handled",
        f"both processes end (exit {outcome.returncode}, no hang); the rank-1 "
        "RuntimeError and its traceback are in stderr",
        outcome.seconds,
    )


def ddp_nan(s):
    case = "NaN loss in rank 1 only (2 processes)"
    outcome, run_dir = launch_two(s, "ddp-nan", "nan")
    if outcome.returncode != 0:
        return Result(case, DDP, "other", describe_failure(outcome), outcome.seconds)
    log = read_log(run_dir)
    digests = [r["weights_digest"] for r in log if r.get("event") == "end"][0]
    skipped = max(r.get("nonfinite_steps", 0) for r in log)
    if len(set(digests)) != 1 or skipped != 1:
        return Result(case, DDP, "lost", f"digests {digests}, {skipped} steps skipped", outcome.seconds)
    return Result(
        case,
        DDP,
        "handled",
        "both processes skip step 2 together (no hang), 1 step counted, identical final weights",
        outcome.seconds,
    )


def ddp_too_small(s):
    case = "data set too small for 2 processes x batch 2"
    run_dir = s.c.run_dir("ddp-too-small")
    outcome = run(
        s.c.launch(
            s.c.train(run_dir, "--dataset", s.good, "--val-dataset", "none", "--repeat-images", "false", steps=4)
        )
    )
    numbers = "too small for 2 process(es) x batch size 2: 3 usable training image(s)"
    if outcome.timed_out:
        return Result(case, DDP, "other", f"hung: still running after {TIMEOUT} s", outcome.seconds)
    if outcome.returncode == 0 or numbers not in outcome.stderr:
        return Result(case, DDP, "other", describe_failure(outcome), outcome.seconds)
    if list(run_dir.glob("checkpoints/*")):
        return Result(case, DDP, "other", "refused, but only after training had started", outcome.seconds)
    return Result(case, DDP, "handled", f"refused before training by both processes: `{numbers} ...`", outcome.seconds)


def ddp_terminated(s):
    """SIGTERM to a 2-process `accelerate launch`: both training processes stop at the same step and save."""
    case = "SIGTERM to a 2-process accelerate launch"
    run_dir = s.c.run_dir("ddp-term")
    started = time.perf_counter()
    process = start(
        s.c.launch(s.c.train(run_dir, "--save-every", "100", "--dataset", s.good, "--val-dataset", "none", steps=400))
    )
    wait_for(process, lambda: '"step": 3,' in read_text(run_dir / "log.jsonl"))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    seconds = time.perf_counter() - started
    from train.config import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    stops = [line for line in stderr.splitlines() if line.startswith("error: stopped by SIGTERM")]
    worker_tracebacks = stderr.count("Traceback") - stderr.count("SignalException")  # the launcher's own is torch's
    if latest is None or len(stops) != 1 or worker_tracebacks > 0 or str(latest) not in stops[0]:
        return Result(
            case, DDP, "other", f"latest {latest}, stop lines {len(stops)}, tracebacks {worker_tracebacks}", seconds
        )
    resumed = run(
        s.c.launch(s.c.resume(run_dir, "--steps", latest.name.split("-")[1].lstrip("0") or "1", "--progress", "false"))
    )
    if resumed.returncode != 0:
        return Result(case, DDP, "lost", "resume failed: " + describe_failure(resumed), seconds)
    return Result(
        case,
        DDP,
        "handled",
        f"both processes save {latest.name} and stop, one line "
        "`error: stopped by SIGTERM ...` (exit 143 each; the launcher itself, torch's elastic agent, "
        "reports its SignalException and exits 1); the checkpoint resumes",
        seconds + resumed.seconds,
    )


# ---- signals the reliability rules name (listed in rules.py) -----------------------------------------------------


def interrupted_twice_while_saving(s):
    """Ctrl-C, then Ctrl-C again while the stop's checkpoint is being written (save_state slowed down)."""
    case = "second Ctrl-C while the stop checkpoint is written"
    where = "train/run.py"
    started = time.perf_counter()
    process, run_dir = s.start_training("twice", injection=["slow-save"])
    wait_for(process, lambda: (run_dir / "checkpoints" / "step-00000002").is_dir())
    process.send_signal(signal.SIGINT)
    wait_for(
        process,
        lambda: any(
            p.name.endswith(".partial") and p.name != "step-00000002.partial"
            for p in (run_dir / "checkpoints").iterdir()
        ),
    )
    time.sleep(1.5)  # a second request, not the first delivered again (train/run.py: StopSignals.REPEAT_AFTER_S)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=TIMEOUT)
    outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
    line = error_line(outcome)
    if process.returncode != 128 + signal.SIGINT or not line or "second SIGINT" not in line:
        return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
    return s.resume_and_compare(case, "twice", started, why=f"stops at once, exit 130, `{shorten(line)[:90]}...`")


def terminated_with_workers(s, signum=signal.SIGTERM):
    """SIGTERM (a scheduler) or SIGHUP (a closed terminal) to the whole process group: DataLoader workers get it
    too."""
    name = signal.Signals(signum).name
    case = f"{name} to the process group, 2 DataLoader workers"
    where = "train/run.py"
    started = time.perf_counter()
    label = f"group-{name.lower()}"
    process, run_dir = s.start_training(label, extra=["--num-workers", "2"], new_session=True)
    wait_for(process, lambda: '"step": 1,' in read_text(run_dir / "log.jsonl"))
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=TIMEOUT)
    outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
    line = error_line(outcome)
    if process.returncode != 128 + signum or not line or f"stopped by {name}" not in line:
        return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
    return s.resume_and_compare(
        case,
        label,
        started,
        why=f"workers leave the signal to the trainer, which saves and exits {128 + signum} with one line",
    )


def interrupted_export(s):
    case = "Ctrl-C during export parity"
    where = "export/to_onnx.py"
    target = s.root / "interrupted.onnx"
    started = time.perf_counter()
    process = start(s.c.to_onnx(target))
    wait_for(process, lambda: any(p.name.startswith(".interrupted.onnx") for p in s.root.iterdir()))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=TIMEOUT)
    outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
    leftovers = [p.name for p in s.root.iterdir() if p.name.startswith((".interrupted", "interrupted"))]
    if leftovers:
        return Result(case, where, "lost", f"left {leftovers}", outcome.seconds)
    if outcome.returncode == 0 and target.exists():
        return Result(case, where, "handled", "finished before the interrupt landed; complete file", outcome.seconds)
    if "Traceback" in stderr or "interrupted" not in stderr:
        return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
    return Result(case, where, "handled", "one line `interrupted: ... not written`, no partial file", outcome.seconds)


def cases():
    return [
        scripted("SIGKILL and resume", killed_and_resumed),
        scripted("SIGKILL while saving", killed_while_saving),
        scripted("SIGTERM", terminated),
        scripted("diverging", diverging),
        scripted("ddp exception", ddp_exception),
        scripted("ddp nan", ddp_nan),
        scripted("ddp too small", ddp_too_small),
    ]
