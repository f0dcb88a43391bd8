"""Never destroy what the user has (rule 1) and bounded writers (rule 4), through every command that writes
(sr_models/files.py): a user's file, links, inputs as outputs, two writers at once, signals, SIGKILL leftovers, a
full disk, worker processes. Faults inside a writer (held at work, or failing) are bench/faults/injections.py's."""

import contextlib
import json
import os
import shutil
import signal
import time

from PIL import Image

from bench.faults.case import scripted
from bench.faults.commands import injected
from bench.faults.harness import (
    TIMEOUT,
    Outcome,
    Result,
    describe_failure,
    error_line,
    group_alive,
    judge_refusal,
    run,
    shorten,
    slug,
    start,
)
from bench.faults.makers import base_image

WRITERS = ("export/upscale.py", "train/evaluate.py", "export/to_onnx.py", "python -m train.data prepare")
OUTPUT_NAMES = {
    "export/upscale.py": "out.png",
    "train/evaluate.py": "report.json",
    "export/to_onnx.py": "model.onnx",
    "python -m train.data prepare": "prepared",
}


def writing(s, where, out, *, inputs):
    """The writer's command line writing `out`, reading the image folder `inputs` (and the tiny model)."""
    if where == "export/upscale.py":
        return s.c.upscale(inputs, out)
    if where == "train/evaluate.py":
        return s.c.evaluate(inputs, "--json", out)
    if where == "export/to_onnx.py":
        return s.c.to_onnx(out, "--parity-data", inputs)
    return s.c.prepare(inputs, out, "--store")


def place_of(s, where, label):
    """(a fresh folder for the case, its copy of the good images, the output's name for this writer)."""
    place = s.root / "destroy" / f"{slug(label)}-{slug(where)}"
    place.mkdir(parents=True)
    photos = place / "photos"
    shutil.copytree(s.good, photos)
    return place, photos, place / OUTPUT_NAMES[where]


def inputs_of(where, photos, out):
    """The input a writer's command reads: the upscaled image, or the folder."""
    return photos / "good0.png" if where == "export/upscale.py" and out.suffix else photos


def everything(place):
    """Every file of the case's folder (links as links): what nothing may change."""
    found = {}
    for entry in [place, *place.rglob("*")]:
        if entry.is_symlink():
            found[entry] = os.readlink(entry)
        elif entry.is_file():
            found[entry] = entry.read_bytes()
    return found


def judge_unchanged(case, where, outcome, before, place, *, names, says):
    """Refused in one line naming `names` and saying `says`, with every file of `place` as it was."""
    changed = [str(p) for p, data in before.items() if everything(place).get(p) != data]
    if changed:
        return Result(case, where, "lost", f"changed or removed: {', '.join(changed)[:120]}", outcome.seconds)
    result = judge_refusal(case, where, outcome, names=names)
    if result.verdict == "handled" and says not in error_line(outcome):
        return Result(
            case, where, "other", f"refused without saying {says!r}: {error_line(outcome)[:120]}", outcome.seconds
        )
    if result.verdict == "handled":
        result.what += "; nothing changed"
    return result


def at_work(command, *, fault="hold"):
    """The writer's own main, held (it sleeps) or failing (`full-disk`) once it has begun writing; prints
    `writing` when it gets there (bench/faults/injections.py)."""
    return start(injected(fault, command))


def began_writing(process):
    return process.stdout.readline().strip() == "writing"


def leftovers(place, out):
    """Hidden files and folders of ours left beside `out` (temporaries, lock files)."""
    return sorted(
        p.name for p in place.iterdir() if p.name.startswith(f".{out.name}.") or p.name.startswith(f"..{out.name}.")
    )


# ---- an existing output, links, inputs -------------------------------------------------------------------------


def users_file(s, where):
    case = "--overwrite on an existing output the toolkit did not write"
    place, photos, out = place_of(s, where, "users")
    if where == "export/upscale.py":
        Image.fromarray(base_image(seed=30)).save(out)  # a real PNG of the user's: no mark of ours
    elif where == "train/evaluate.py":
        out.write_text(json.dumps({"model": "my notes"}) + "\n")
    elif where == "export/to_onnx.py":
        import onnx

        model = onnx.load(str(s.onnx))
        model.producer_name = "pytorch"  # someone else's export
        onnx.save(model, str(out))
    else:  # the example: prepare --output <any folder> --overwrite deleted it
        out.mkdir()
        (out / "thesis.tex").write_text("years of work\n")
    before = everything(place)
    outcome = run([*writing(s, where, out, inputs=inputs_of(where, photos, out)), "--overwrite"])
    result = judge_unchanged(case, where, outcome, before, place, names=str(out), says="not written by this toolkit")
    if result.verdict == "handled" and "pass --overwrite" in error_line(outcome):
        return Result(case, where, "other", "the refusal suggests --overwrite", outcome.seconds)
    return result


def report_onto_model(s):
    case = "--json onto a model this toolkit exported (--overwrite)"
    where = "train/evaluate.py"
    place, photos, _ = place_of(s, where, "report-onto-model")
    model = place / "model.onnx"
    shutil.copy(s.onnx, model)  # ours: the mark is in the file, but it is a model, not a report
    before = everything(place)
    outcome = run([*writing(s, where, model, inputs=photos), "--overwrite"])
    return judge_unchanged(case, where, outcome, before, place, names=str(model), says="not written by this toolkit")


def output_link(s, where):
    case = "output path is a symbolic link to a user's file (--overwrite)"
    place, photos, out = place_of(s, where, "link")
    users = place / f"users{out.suffix}"
    if out.suffix:
        users.write_bytes(b"the user's own file\n")
    else:
        users.mkdir()
        (users / "thesis.tex").write_text("years of work\n")
    out.symlink_to(users)
    before = everything(place)
    outcome = run([*writing(s, where, out, inputs=inputs_of(where, photos, out)), "--overwrite"])
    return judge_unchanged(case, where, outcome, before, place, names=str(out), says="symbolic link")


def onto_input(s, where, how):
    case = f"output is an input: {how} (--overwrite)"
    place, photos, out = place_of(s, where, f"input-{how}")
    inputs = inputs_of(where, photos, out)
    if how == "hard link":
        os.link(photos / "good0.png" if where != "export/to_onnx.py" else s.weights, out)
    elif how == "symbolic link":
        out.symlink_to(photos if where == "python -m train.data prepare" else photos / "good0.png")
    elif how == "image in --hr":  # the example: evaluate.py --json HR/baby.png --overwrite
        out = photos / "good1.png"
    elif how == "weights":
        out = s.weights
    elif how == "inside --parity-data":
        out = photos / "model.onnx"
    elif how == "holding --dataset":
        out = place
    else:  # an upscale folder run into the folder that holds its input folder
        out, inputs = place, photos
    before = {**everything(place), s.weights: s.weights.read_bytes()}
    outcome = run([*writing(s, where, out, inputs=inputs), "--overwrite"])
    changed = [str(p) for p, data in before.items() if p != s.weights and everything(place).get(p) != data]
    if s.weights.read_bytes() != before.pop(s.weights) or changed:
        return Result(case, where, "lost", f"changed: {', '.join(changed)[:120] or s.weights}", outcome.seconds)
    return judge_unchanged(case, where, outcome, before, place, names=str(out), says="input")


def run_lock_link(s):
    case = "run folder whose .sr-toolkit-run.lock is a link to a user's file"
    where = "train/run.py"
    place = s.root / "destroy" / "run-lock"
    (place / "run").mkdir(parents=True)
    users = place / "users.txt"
    users.write_text("the user's own file\n")
    (place / "run" / ".sr-toolkit-run.lock").symlink_to(users)
    before = everything(place)
    outcome = run(s.c.train(place / "run", "--dataset", s.good, "--val-dataset", "none", steps=1))
    return judge_unchanged(case, where, outcome, before, place, names=".sr-toolkit-run.lock", says="symbolic link")


def run_inside_data(s):
    case = "new run folder inside its --dataset folder"
    where = "train/run.py"
    place = s.root / "destroy" / "run-inside"
    shutil.copytree(s.good, place / "photos")
    before = everything(place)
    run_dir = place / "photos" / "run"  # its samples/ would be trained on by the next run of that folder
    outcome = run(s.c.train(run_dir, "--dataset", place / "photos", "--val-dataset", "none", steps=1))
    result = judge_unchanged(case, where, outcome, before, place, names=str(run_dir), says="input folder")
    if result.verdict == "handled" and run_dir.exists():
        return Result(case, where, "other", "refused, but the run folder was made", outcome.seconds)
    return result


# ---- writers at work: signals, kills, a full disk, a second writer ---------------------------------------------


def stopped_while_writing(s, where, signum):
    case = f"{signal.Signals(signum).name} while the output is being written"
    place, photos, out = place_of(s, where, f"signal-{signum}")
    started = time.perf_counter()
    process = at_work(writing(s, where, out, inputs=inputs_of(where, photos, out)))
    if not began_writing(process):
        process.kill()
        return Result(case, where, "other", f"the writer never began: {process.communicate()[1][-200:]}")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=TIMEOUT)
    seconds = time.perf_counter() - started
    lines = [line for line in stderr.splitlines() if line.strip()]
    left = leftovers(place, out) + ([out.name] if out.exists() else [])
    if left:
        return Result(case, where, "lost", f"left {left}", seconds)
    if process.returncode != 128 + signum or len(lines) != 1 or not lines[0].startswith("interrupted: "):
        return Result(case, where, "other", f"exit {process.returncode}: {stderr.strip()[-200:]}", seconds)
    return Result(
        case,
        where,
        "handled",
        f"exit {process.returncode}, one line `{shorten(lines[0], str(out))}`, no partial file",
        seconds,
    )


def full_disk(s, where):
    case = "disk full while the output is being written"
    place, photos, out = place_of(s, where, "full")
    started = time.perf_counter()
    process = at_work(writing(s, where, out, inputs=inputs_of(where, photos, out)), fault="full-disk")
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    outcome = Outcome(process.returncode, stdout, stderr, time.perf_counter() - started)
    left = leftovers(place, out) + ([out.name] if out.exists() else [])
    if left:
        return Result(case, where, "lost", f"left {left}", outcome.seconds)
    result = judge_refusal(case, where, outcome, names=str(out))
    if result.verdict == "handled":
        result.what += "; nothing left behind"
    return result


def killed_then_again(s, where):
    case = "SIGKILL while writing, then the same command again"
    place, photos, out = place_of(s, where, "killed")
    command = writing(s, where, out, inputs=inputs_of(where, photos, out))
    started = time.perf_counter()
    process = at_work(command)
    if not began_writing(process):
        process.kill()
        return Result(case, where, "other", f"the writer never began: {process.communicate()[1][-200:]}")
    process.kill()
    process.communicate()
    left = leftovers(place, out)
    users = {place / f".{out.name}.notes": b"the user's", place / f"{out.name}.123.partial": b"the user's"}
    for path, data in users.items():
        path.write_bytes(data)
    again = run(command)
    seconds = time.perf_counter() - started + again.seconds
    if again.returncode != 0:
        return Result(case, where, "other", describe_failure(again), seconds)
    still = [name for name in leftovers(place, out) if name != f".{out.name}.notes"]
    if still or any(path.read_bytes() != data for path, data in users.items()):
        return Result(case, where, "lost", f"after the second run: {still or 'a user file changed'}", seconds)
    return Result(
        case,
        where,
        "handled",
        f"the killed run left {len(left)} hidden file(s) of ours "
        f"({', '.join(n.replace(str(process.pid), 'PID') for n in left)[:80]}); the next run removed "
        "them, and only them",
        seconds,
    )


def two_writers(s, where):
    case = "two commands writing one output at once"
    place, photos, out = place_of(s, where, "two")
    if where == "export/upscale.py":  # the example: two upscale runs into one output folder
        out = place / "upscaled"
    inputs = photos if where == "export/upscale.py" else inputs_of(where, photos, out)
    command = writing(s, where, out, inputs=inputs)
    started = time.perf_counter()
    first = at_work(command)
    try:
        if not began_writing(first):
            return Result(case, where, "other", "the first writer never began")
        second = run(command)
    finally:
        first.kill()
        first.communicate()
    second.seconds = time.perf_counter() - started
    result = judge_refusal(case, where, second, names=str(out))
    if result.verdict == "handled" and f"pid {first.pid}" not in error_line(second):
        return Result(case, where, "other", f"refused without the first's pid: {error_line(second)}", second.seconds)
    if result.verdict == "handled":
        result.what = result.what.replace(str(first.pid), "N")
    return result


def into_a_folder_being_written(s, where):
    """A folder upscale is filling a folder; a single image (a report, an export) written into it is refused."""
    case = "a lone output into a folder another command is filling"
    place, photos, _ = place_of(s, where, "into-folder")
    folder = place / "upscaled"
    started = time.perf_counter()
    first = at_work(writing(s, "export/upscale.py", folder, inputs=photos))
    try:
        if not began_writing(first):
            return Result(case, where, "other", "the folder upscale never began")
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        lone = folder / ("good0.png" if where == "export/upscale.py" else OUTPUT_NAMES[where])
        command = writing(s, where, lone, inputs=photos / "good0.png" if where == "export/upscale.py" else photos)
        second = run([*command, "--overwrite"])
        after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    finally:
        first.kill()
        first.communicate()
    second.seconds = time.perf_counter() - started
    if after != before:
        return Result(case, where, "lost", "the folder's files changed", second.seconds)
    result = judge_refusal(case, where, second, names=str(lone))
    if result.verdict == "handled" and f"pid {first.pid}" not in error_line(second):
        return Result(case, where, "other", f"refused without the holder's pid: {error_line(second)}", second.seconds)
    if result.verdict == "handled":
        result.what = result.what.replace(str(first.pid), "N")
    return result


def prepare_workers(s, signum, group):
    """prepare --num-proc 2 cutting sub-images in datasets' forked workers, stopped by a signal to the terminal's
    process group or to the command alone: one line, no process left, no partial output or cache file."""
    where = "python -m train.data prepare"
    case = f"{signum.name} to the {'process group' if group else 'command'} while 2 workers cut sub-images"
    place, photos, out = place_of(s, where, f"workers-{signum}-{group}")
    cache = place / "cache"
    command = s.c.prepare(
        photos, out, "--subimage-size", "32", "--subimage-step", "32", "--num-proc", "2", scale=2, cache=cache
    )
    started = time.perf_counter()
    process = start(injected("slow-subimages", command), new_session=True)
    try:
        if not process.stdout.readline().startswith("writing"):
            return Result(case, where, "other", "no worker began")
        (os.killpg if group else os.kill)(process.pid, signum)
        _, stderr = process.communicate(timeout=TIMEOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and group_alive(process.pid):
            time.sleep(0.1)
        survivors = group_alive(process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    seconds = time.perf_counter() - started
    left = leftovers(place, out) + ([out.name] if out.exists() else [])
    left += [p.name for p in (cache / "sr-toolkit-subimages").glob("tmp*")]
    if left:
        return Result(case, where, "lost", f"left {left}", seconds)
    lines = [line for line in stderr.splitlines() if line.strip()]
    if survivors or process.returncode != 128 + signum or len(lines) != 1 or not lines[0].startswith("interrupted: "):
        return Result(
            case,
            where,
            "other",
            f"exit {process.returncode}{', a worker survived' if survivors else ''}: {stderr.strip()[-200:]}",
            seconds,
        )
    return Result(
        case,
        where,
        "handled",
        f"exit {process.returncode}, one line `{shorten(lines[0], str(out))}`, "
        "no process, partial folder or cache file left",
        seconds,
    )


INPUTS_AS_OUTPUTS = (
    ("export/upscale.py", "hard link"),
    ("export/upscale.py", "symbolic link"),
    ("train/evaluate.py", "image in --hr"),
    ("train/evaluate.py", "hard link"),
    ("train/evaluate.py", "symbolic link"),
    ("train/evaluate.py", "weights"),
    ("export/to_onnx.py", "hard link"),
    ("export/to_onnx.py", "inside --parity-data"),
    ("python -m train.data prepare", "symbolic link"),
    ("python -m train.data prepare", "holding --dataset"),
    ("export/upscale.py", "folder holding the input folder"),
)


def cases():
    found = []
    for where in WRITERS:
        found += [
            scripted(f"destroy / overwrite a user's file / {where}", lambda s, w=where: users_file(s, w)),
            scripted(f"destroy / output is a link / {where}", lambda s, w=where: output_link(s, w)),
            scripted(f"destroy / two writers / {where}", lambda s, w=where: two_writers(s, w)),
            scripted(f"destroy / SIGTERM / {where}", lambda s, w=where: stopped_while_writing(s, w, signal.SIGTERM)),
            scripted(f"destroy / SIGKILL leftovers / {where}", lambda s, w=where: killed_then_again(s, w)),
        ]
    for where in ("export/upscale.py", "python -m train.data prepare"):
        found.append(
            scripted(f"destroy / SIGHUP / {where}", lambda s, w=where: stopped_while_writing(s, w, signal.SIGHUP))
        )
    for where in ("export/upscale.py", "export/to_onnx.py", "python -m train.data prepare"):
        found.append(scripted(f"destroy / full disk / {where}", lambda s, w=where: full_disk(s, w)))
    for where, how in INPUTS_AS_OUTPUTS:
        found.append(
            scripted(f"destroy / output is an input ({how}) / {where}", lambda s, w=where, h=how: onto_input(s, w, h))
        )
    for where in ("export/upscale.py", "train/evaluate.py", "export/to_onnx.py"):
        found.append(
            scripted(
                f"destroy / a lone output into a folder being upscaled / {where}",
                lambda s, w=where: into_a_folder_being_written(s, w),
            )
        )
    for signum, group in ((signal.SIGINT, True), (signal.SIGTERM, False)):
        found.append(
            scripted(
                f"destroy / {signum.name} to the {'group' if group else 'command'} with worker processes"
                " / python -m train.data prepare",
                lambda s, n=signum, g=group: prepare_workers(s, n, g),
            )
        )
    found += [
        scripted("destroy / a report onto our model / train/evaluate.py", report_onto_model),
        scripted("destroy / run lock is a link / train/run.py", run_lock_link),
        scripted("destroy / output is an input (run folder inside --dataset) / train/run.py", run_inside_data),
    ]
    return found
