"""The reliability rules (docs/reliability.md): never destroy what the user has, validate everything read, one line
for anything a user can cause, say when an output is suspect."""

import os
import signal
import time

import numpy as np

from bench.faults.case import Case, exists, refused, scripted
from bench.faults.cases.interrupted import (
    ddp_terminated,
    interrupted_export,
    interrupted_twice_while_saving,
    terminated_with_workers,
)
from bench.faults.commands import SCALE
from bench.faults.harness import (
    TIMEOUT,
    Outcome,
    Result,
    describe_failure,
    error_line,
    judge_refusal,
    read_log,
    run,
    shorten,
    slug,
    start,
    usable_run,
)
from bench.faults.makers import (
    BAD_WEIGHTS,
    base_image,
    flip_byte,
    make_bad_weights,
    make_damaged_zip_pth,
    make_glob_pairs,
    make_mislabelled_onnx,
    make_static_onnx,
    make_wild_onnx,
    make_yaml_bomb,
)
from sr_models.images import save_rgb

WRITERS = ("export/upscale.py", "train/evaluate.py", "export/to_onnx.py", "python -m train.data prepare")


# ---- rule 1: never destroy what the user has -------------------------------------------------------------------


def kept(s, case, where, command, kept_files, *, names):
    """Run `command`: refused naming `names`, every file of `kept_files` ({path: bytes}) as it was."""
    outcome = run(command)
    return s.judge_kept(case, where, outcome, kept_files, names=str(names)), outcome


def upscale_onto_input(s, overwrite):
    case = "output file = input file" + (" (with --overwrite)" if overwrite else "")
    folder = s.root / f"same-{overwrite}"
    folder.mkdir()
    source = folder / "in.png"
    save_rgb(source, base_image(seed=20))
    command = s.c.upscale(source, source, *(["--overwrite"] if overwrite else []))
    return kept(s, case, "export/upscale.py", command, {source: source.read_bytes()}, names=source)[0]


def upscale_into_input_folder(s, inside):
    case = "output folder " + ("inside the input folder" if inside else "= input folder")
    folder = s.root / f"photos-{inside}"
    folder.mkdir()
    for seed in range(2):
        save_rgb(folder / f"p{seed}.png", base_image(seed=seed))
    target = folder / "x4" if inside else folder
    result, outcome = kept(
        s,
        case,
        "export/upscale.py",
        s.c.upscale(folder, target),
        {p: p.read_bytes() for p in folder.iterdir()},
        names=target,
    )
    if result.verdict == "handled" and inside and target.exists():
        return Result(case, result.where, "other", "refused, but left an empty output folder", outcome.seconds)
    return result


def existing_output(s, where):
    case = "output file that already exists (written by an earlier run)"
    folder = s.root / f"existing-{slug(where)}"
    folder.mkdir()
    save_rgb(folder / "in.png", base_image(seed=21))
    if where == "export/upscale.py":
        target = folder / "out.png"
        command = s.c.upscale(folder / "in.png", target)
    elif where == "train/evaluate.py":  # beside --hr, not in it (an output never lies inside an input folder)
        target = folder.with_name(folder.name + "-report.json")
        command = s.c.evaluate(folder, "--json", target)
    elif where == "export/to_onnx.py":
        target = folder / "model.onnx"
        command = s.c.to_onnx(target, "--no-parity")
    else:
        target = folder / "prepared"
        command = s.c.prepare(s.good, target, "--subimage-size", "48", "--subimage-step", "48")
    earlier = run(command)  # an earlier output of ours (a user's own file is never replaced: "destroy /" cases)
    if earlier.returncode != 0:
        return Result(case, where, "other", describe_failure(earlier), earlier.seconds)
    inode = target.stat().st_ino
    result, outcome = kept(
        s,
        case,
        where,
        command,
        {p: p.read_bytes() for p in ([target] if target.is_file() else target.iterdir())},
        names=target,
    )
    if result.verdict != "handled":
        return result
    replaced = run([*command, "--overwrite"])  # and --overwrite replaces it, with a complete result
    if replaced.returncode != 0 or target.stat().st_ino == inode:
        return Result(
            case,
            where,
            "other",
            f"--overwrite did not replace it: {describe_failure(replaced)}",
            outcome.seconds + replaced.seconds,
        )
    result.what += "; --overwrite replaces it"
    return result


def run_into_users_folder(s):
    case = "new run in a folder holding a user's config.yaml and metrics.json"
    folder = s.root / "users-folder"
    folder.mkdir()
    (folder / "config.yaml").write_text("mine: true\n")
    (folder / "metrics.json").write_text('{"mine": 1}\n')
    before = {p: p.read_bytes() for p in folder.iterdir()}
    result, outcome = kept(
        s,
        case,
        "train/run.py",
        s.c.train(folder, "--dataset", s.good, "--val-dataset", "none", steps=1),
        before,
        names=folder,
    )
    if result.verdict == "handled" and sorted(p.name for p in folder.iterdir()) != sorted(p.name for p in before):
        return Result(case, result.where, "other", "refused, but added files to the folder", outcome.seconds)
    return result


def resume_into_another_run(s):
    case = "--resume run A's checkpoint with --output-dir = finished run B"
    outcome_a, run_a = s.train("resume-a", "--dataset", s.good, "--val-dataset", "none", "--stop-after", "1", steps=3)
    outcome_b, run_b = s.train("resume-b", "--dataset", s.good, "--val-dataset", "none", steps=1)
    if outcome_a.returncode or outcome_b.returncode:
        return Result(case, "train/run.py", "other", "set-up runs failed: " + describe_failure(outcome_a))
    before = {p: p.read_bytes() for p in run_b.rglob("*") if p.is_file()}
    command = s.c.resume(run_b, "--progress", "false", checkpoint=run_a / "checkpoints" / "step-00000001")
    return kept(s, case, "train/run.py", command, before, names=run_b)[0]


def two_runs_at_once(s):
    case = "two runs started at the same instant on one run folder"
    where = "train/run.py (2 processes)"
    folder = s.c.run_dir("race")
    command = s.c.train(folder, "--dataset", s.good, "--val-dataset", "none", steps=3)
    started = time.perf_counter()
    processes = [start(command) for _ in range(2)]
    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    outcomes = [
        Outcome(p.returncode, out, err, time.perf_counter() - started) for p, (out, err) in zip(processes, outputs)
    ]
    codes = sorted(o.returncode for o in outcomes)
    refusals = [o for o in outcomes if o.returncode != 0]
    line = error_line(refusals[0]) if refusals else None
    events = [r.get("event") for r in read_log(folder) if r.get("event")] if (folder / "log.jsonl").exists() else []
    seconds = time.perf_counter() - started
    if codes != [0, 1] or not line or events != ["start", "end"] or usable_run(folder):
        return Result(
            case,
            where,
            "lost" if events != ["start", "end"] else "other",
            f"exit codes {codes}, log events {events}, refusal {line!r}",
            seconds,
        )
    return Result(case, where, "handled", f"one trains, the other is refused: `{shorten(line)}`", seconds)


def output_under_a_file(where):
    def files(s):
        blocker = s.root / f"blocker-{slug(where)}.png"
        save_rgb(blocker, base_image(seed=22))
        if where == "train/evaluate.py":
            folder = s.root / "under-file-eval"
            folder.mkdir()
            save_rgb(folder / "a.png", base_image(seed=23))
            return {"blocker": blocker, "folder": folder}
        return {"blocker": blocker}

    def command(s, f):
        if where == "export/upscale.py":
            return s.c.upscale(f["blocker"], f["blocker"] / "out.png")
        if where == "train/evaluate.py":
            return s.c.evaluate(f["folder"], "--json", f["blocker"] / "report.json")
        return s.c.train(f["blocker"] / "run", "--dataset", s.good, "--val-dataset", "none", steps=1)

    return Case(
        f"rules / output under a file / {where}", "output path under a file", where, files, command, refused("blocker")
    )


def umask_respected(s):
    case = "files take the user's umask (022: mode 0644)"
    where = "train/run.py, export/upscale.py"
    run_dir = s.c.run_dir("umask")
    target = s.root / "umask-out.png"
    started = time.perf_counter()
    old = os.umask(0o022)
    try:
        trained = run(s.c.train(run_dir, "--dataset", s.good, "--val-dataset", "none", steps=1))
        upscaled = run(s.c.upscale(s.good / "good0.png", target))
    finally:
        os.umask(old)
    files = [run_dir / "model.safetensors", run_dir / "metrics.json", run_dir / "config.yaml", target]
    if trained.returncode or upscaled.returncode:
        return Result(case, where, "other", describe_failure(trained if trained.returncode else upscaled))
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in files}
    if set(modes.values()) != {"0o644"}:
        return Result(case, where, "other", f"modes {modes}", time.perf_counter() - started)
    return Result(
        case, where, "handled", "weights, metrics, config and images are written 0644", time.perf_counter() - started
    )


# ---- rule 2: everything read is validated ----------------------------------------------------------------------


def bad_weights(kind):
    """Our safetensors with metadata or tensors that must be refused, through train/evaluate.py."""

    def files(s):
        path = s.root / f"weights-{kind}.safetensors"
        make_bad_weights(path, s.weights, kind)
        return {"weights": path}

    return Case(
        f"rules / weights {kind}",
        BAD_WEIGHTS[kind],
        "train/evaluate.py",
        files,
        lambda s, f: s.c.evaluate(s.good, weights=f["weights"]),
        refused("weights"),
    )


def damaged_zip_pth(s):
    path = s.root / "damaged.pth"
    make_damaged_zip_pth(path, s.weights)
    return {"weights": path}


def mislabelled_onnx(claimed):
    def files(s):
        name = slug(claimed) or "empty"
        path = s.root / f"mislabelled-{name}.onnx"
        make_mislabelled_onnx(path, s.onnx, claimed)
        return {"model": path, "target": s.root / f"mislabelled-{name}.png"}

    return Case(
        f"rules / onnx scale {claimed}",
        f"ONNX metadata scale {claimed!r} on an x{SCALE} graph",
        "export/upscale.py",
        files,
        lambda s, f: s.c.upscale(s.good / "good0.png", f["target"], model=f["model"]),
        refused("model", unless=[(exists("target"), "lost", "refused, yet wrote an image")]),
    )


def glob_pairs(s):
    hr, lr = make_glob_pairs(s.root / "glob-pairs")
    return {"hr": hr, "lr": lr}


def yaml_bomb(s):
    make_yaml_bomb(s.root / "bomb.yaml")
    return {"recipe": s.root / "bomb.yaml"}


def static_onnx(s):
    make_static_onnx(s.root / "static.onnx")
    return {"model": s.root / "static.onnx"}


def option_check(label, args, names):
    case = f"option out of range: {label}"
    return Case(
        f"rules / {label}",
        case,
        "train/run.py",
        lambda s: {"run": s.c.run_dir(f"option-{slug(label)}")},
        lambda s, f: s.c.train(f["run"], "--dataset", s.good, *args, steps=None),
        refused(names, unless=[(exists("run"), "other", "refused, but left a run folder")]),
        timeout=60,
    )


def resume_damaged_latest(s):
    case = "--resume latest when the newest checkpoint is damaged"
    where = "train/run.py"
    outcome, run_dir = s.train(
        "damaged-latest",
        "--dataset",
        s.good,
        "--val-dataset",
        "none",
        "--save-every",
        "2",
        "--stop-after",
        "4",
        steps=6,
    )
    newest = run_dir / "checkpoints" / "step-00000004" / "model.safetensors"
    if outcome.returncode != 0 or not newest.is_file():
        return Result(case, where, "other", "set-up run failed: " + describe_failure(outcome))
    flip_byte(newest, -7, 0x10)
    resumed = run(s.c.resume(run_dir, "--progress", "false"))
    said = resumed.stdout + resumed.stderr
    if resumed.returncode != 0:
        return Result(case, where, "other", describe_failure(resumed), resumed.seconds)
    if "step-00000004/model.safetensors: damaged" not in said or "resuming from step-00000002" not in said:
        return Result(case, where, "lost", "resumed without naming the damaged checkpoint", resumed.seconds)
    return Result(
        case,
        where,
        "handled",
        "names the damaged step-4 file, says it resumes from step-2, finishes",
        outcome.seconds + resumed.seconds,
    )


def resume_contradiction(s):
    case = "--resume with an override that contradicts the checkpoint (--lr)"
    outcome, run_dir = s.train("contradict", "--dataset", s.good, "--val-dataset", "none", "--stop-after", "1", steps=3)
    if outcome.returncode != 0:
        return Result(case, "train/run.py", "other", "set-up run failed: " + describe_failure(outcome))
    return judge_refusal(case, "train/run.py", run(s.c.resume(run_dir, "--lr", "0.5")), names="-> 0.5")


def more_steps_after_the_end(s):
    case = "--resume a finished run with more --steps"
    where = "train/run.py"
    outcome, run_dir = s.train("extend", "--dataset", s.good, "--val-dataset", "none", "--min-lr", "1e-6", steps=3)
    resumed = run(s.c.resume(run_dir, "--steps", "5"))
    if outcome.returncode != 0 or resumed.returncode != 0:
        return Result(case, where, "other", describe_failure(resumed if outcome.returncode == 0 else outcome))
    rates = {r["step"]: r["lr"] for r in read_log(run_dir) if "lr" in r}
    if not (abs(rates.get(4, 1) - 1e-6) < 1e-12 and abs(rates.get(5, 1) - 1e-6) < 1e-12):
        return Result(case, where, "lost", f"learning rates after the schedule: {rates}", resumed.seconds)
    return Result(
        case,
        where,
        "handled",
        "steps 4-5 run at the schedule's final rate (1e-6), not a re-stretched schedule",
        outcome.seconds + resumed.seconds,
    )


# ---- rule 3: one line for anything a user can cause; rule 4: say when an output is suspect ---------------------


def bad_device(where, device):
    def command(s, f):
        if where == "export/upscale.py":
            return s.c.upscale(s.good / "good0.png", s.root / f"dev-{slug(device)}.png", device=device)
        return s.c.evaluate(s.good, device=device)

    return Case(
        f"rules / device {device} / {where}",
        f"--device {device}",
        where,
        None,
        command,
        refused(f"--device '{device}'"),
    )


def suspect_output(s):
    """A model whose output explodes where the input is near white: upscale warns, naming image and region."""
    image = np.full((20, 30, 3), 90, np.uint8)
    image[2:5, 10:20] = 255
    source = s.root / "wild-in.png"
    save_rgb(source, image)
    make_wild_onnx(s.root / "wild.onnx")
    return {"model": s.root / "wild.onnx", "source": source}


def warns_of_the_region(ran):
    expected = f"warning: {ran.files['source']}: model output far outside [0, 1]"
    region = f"x {10 * SCALE}-{20 * SCALE}, y {2 * SCALE}-{5 * SCALE}"
    outcome = ran.outcome
    if outcome.returncode != 0 or expected not in outcome.stderr or region not in outcome.stderr:
        return ran.result("lost" if outcome.returncode == 0 else "other", describe_failure(outcome))
    return ran.result("handled", f"writes the image and warns naming it and the region ({region})")


OPTIONS = [
    ("--warmup-fraction 0.9 --steps 3", ["--warmup-fraction", "0.9", "--steps", "3"], "warmup_fraction"),
    ("--steps 10**19", ["--steps", str(10**19)], "steps"),
    ("--lr nan", ["--lr", "nan", "--steps", "1"], "lr"),
    ("--batch-size -1", ["--batch-size", "-1", "--steps", "1"], "batch_size"),
]


def cases():
    found = [
        scripted("rules / output = input", lambda s: upscale_onto_input(s, False)),
        scripted("rules / output = input --overwrite", lambda s: upscale_onto_input(s, True)),
        scripted("rules / output folder = input", lambda s: upscale_into_input_folder(s, False)),
        scripted("rules / output folder inside input", lambda s: upscale_into_input_folder(s, True)),
    ]
    for where in WRITERS:
        found.append(scripted(f"rules / existing output / {where}", lambda s, w=where: existing_output(s, w)))
    for where in ("export/upscale.py", "train/evaluate.py", "train/run.py"):
        found.append(output_under_a_file(where))
    found += [
        scripted("rules / user's folder", run_into_users_folder),
        scripted("rules / resume into another run", resume_into_another_run),
        scripted("rules / two runs at once", two_runs_at_once),
        scripted("rules / umask", umask_respected),
        scripted("rules / second Ctrl-C", interrupted_twice_while_saving),
        scripted("rules / SIGTERM group with workers", terminated_with_workers),
        scripted("rules / SIGHUP group with workers", lambda s: terminated_with_workers(s, signal.SIGHUP)),
        scripted("rules / SIGTERM 2-process launch", ddp_terminated),
        scripted("rules / Ctrl-C export", interrupted_export),
        Case(
            "rules / zip pth",
            "zip .pth with a flipped byte (fails its CRC)",
            "train/evaluate.py",
            damaged_zip_pth,
            lambda s, f: s.c.evaluate(s.good, "--model", "pan", "--scale", SCALE, weights=f["weights"]),
            refused("weights"),
        ),
        Case(
            "rules / overrides too large",
            "--model-overrides {num_blocks: 100000000}",
            "train/run.py",
            lambda s: {"run": s.c.run_dir("huge")},
            lambda s, f: s.c.train(f["run"], "--model-overrides", "{num_blocks: 100000000}", steps=1),
            refused("num_blocks", unless=[(exists("run"), "other", "refused, but left a run folder")]),
            timeout=30,
        ),
        Case(
            "rules / static onnx",
            "ONNX model with a fixed input size",
            "export/upscale.py",
            static_onnx,
            lambda s, f: s.c.upscale(s.good / "good0.png", s.root / "static.png", model=f["model"]),
            refused("model"),
        ),
        Case(
            "rules / glob names",
            "LR/HR pairing with glob characters in names (img[1].png vs img1x4.png)",
            "train/evaluate.py",
            glob_pairs,
            lambda s, f: s.c.evaluate(f["hr"], "--lr", f["lr"]),
            refused("lr"),
        ),
        Case(
            "rules / yaml bomb",
            "recipe YAML with nested aliases (a billion-laughs file)",
            "train/run.py",
            yaml_bomb,
            lambda s, f: s.c.recipe(f["recipe"], "--output-dir", s.c.run_dir("bomb")),
            refused("recipe"),
            timeout=60,
        ),
        scripted("rules / damaged latest", resume_damaged_latest),
        scripted("rules / resume contradiction", resume_contradiction),
        scripted("rules / more steps", more_steps_after_the_end),
        Case(
            "rules / suspect output",
            "model output far outside [0, 1] in one region",
            "export/upscale.py",
            suspect_output,
            lambda s, f: s.c.upscale(f["source"], s.root / "wild-out.png", model=f["model"]),
            warns_of_the_region,
        ),
    ]
    found += [bad_weights(kind) for kind in BAD_WEIGHTS]
    found += [mislabelled_onnx(claimed) for claimed in ("2", "0", "x4")]
    found += [option_check(label, args, names) for label, args, names in OPTIONS]
    for where, device in (
        ("export/upscale.py", "cuda"),
        ("export/upscale.py", "gpu0"),
        ("train/evaluate.py", "cuda:3"),
        ("train/evaluate.py", "tpu"),
    ):
        found.append(bad_device(where, device))
    return found
