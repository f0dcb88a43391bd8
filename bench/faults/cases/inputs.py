"""Bad input: every kind of bad or odd image file in training data, validation data, evaluate.py and upscale.py;
images smaller than the patch or the scale; empty and image-less folders; unicode paths; mismatched LR/HR pairs;
--skip-corrupt."""

import json

import numpy as np

from bench.faults.case import Case, refused
from bench.faults.harness import Result, describe_failure, read_log, run, slug, usable_run
from bench.faults.makers import FILES, base_image, make_mismatched_pair, make_one_pixel, make_small
from bench.faults.suite import bicubic_psnr_y
from sr_models.images import load_rgb, save_rgb

NORMALISED = [kind for kind, (_, _, refused_) in FILES.items() if not refused_]
WHERE = ("training data", "validation data", "train/evaluate.py", "export/upscale.py")


# ---- odd but valid files: read as the same 8-bit RGB everywhere -------------------------------------------------


def normalised_folder(s, name, run, *, good):
    """A folder of every odd-but-valid kind (beside the good images or not): its references by kind."""
    if good:
        folder, _ = s.folder(name)
    else:
        folder = s.root / name
        folder.mkdir()
    references = {kind: FILES[kind][0](folder / f"{slug(kind)}{FILES[kind][1]}") for kind in NORMALISED}
    return {"folder": folder, "references": references, "run": s.c.run_dir(run)}


def trains_on_all(ran):
    """One run on a folder holding every odd-but-valid kind beside the good images: each must be used.
    (That each decodes to the reference array is tests/test_faults.py's job, in-process.)"""
    result = ran.suite.judge_trained("", ran.where, ran.outcome, ran.files["run"], images=3 + len(NORMALISED))
    if result.verdict == "handled":
        result.what = (
            f"trains: read as 8-bit RGB (one run with all {len(NORMALISED)} kinds beside 3 good images, "
            "every image used)"
        )
    return [Result(kind, result.where, result.verdict, result.what, result.seconds) for kind in NORMALISED]


def validates_all(ran):
    """One run validating on every odd-but-valid kind: the bicubic baseline's mean PSNR_Y over them must be the
    mean of the figures computed here from the reference arrays (a different decode would change it)."""

    def each(verdict, what):
        return [Result(kind, ran.where, verdict, what, ran.outcome.seconds) for kind in NORMALISED]

    if ran.outcome.returncode != 0:
        return each("other", describe_failure(ran.outcome))
    problem = usable_run(ran.files["run"])
    if problem:
        return each("lost", problem)
    got = json.loads((ran.files["run"] / "metrics.json").read_text())["bicubic_psnr_y"]
    reference = float(np.mean([bicubic_psnr_y(r) for r in ran.files["references"].values()]))
    if abs(got - reference) > 1e-6:
        return each("lost", f"bicubic PSNR_Y {got:.4f} != reference {reference:.4f}: decoded differently")
    return each(
        "handled",
        f"validates: read as 8-bit RGB (one run with all {len(NORMALISED)} kinds; mean bicubic "
        "PSNR_Y equal to the reference decode's)",
    )


def scores_like_the_reference(ran):
    if ran.outcome.returncode != 0:
        return ran.result("other", describe_failure(ran.outcome))
    got = json.loads(ran.files["report"].read_text())["mean"]["bicubic_psnr_y"]
    reference = bicubic_psnr_y(ran.files["expected"])
    if abs(got - reference) > 1e-6:
        return ran.result("lost", f"bicubic PSNR_Y {got:.3f} != reference {reference:.3f}")
    return ran.result("handled", "scores: read as 8-bit RGB, same figures as the reference decode")


def upscales_like_the_reference(ran):
    return ran.suite.judge_upscaled(ran.name, ran.outcome, ran.files["target"], ran.files["expected"])


# ---- one kind of file, through each reader -------------------------------------------------------------------


def in_a_folder(s, name, kind, *, good=False):
    """A folder named `name` holding the file of `kind` (`case.png` ...), beside the good images or not."""
    maker, suffix, _ = FILES[kind]
    if good:
        folder, _ = s.folder(name)
    else:
        folder = s.root / name
        folder.mkdir()
    file = folder / f"case{suffix}"
    return {"folder": folder, "file": file, "expected": maker(file)}


def beside_one_good(s, name, kind):
    """A validation folder: one good image and the file of `kind`."""
    maker, suffix, _ = FILES[kind]
    folder = s.root / name
    folder.mkdir()
    save_rgb(folder / "good.png", base_image(seed=5))
    maker(folder / f"case{suffix}")
    return {"folder": folder, "file": folder / f"case{suffix}"}


def file_cases(kind):
    """The cases of one kind of file: refused by every reader, or read as the reference by evaluate and upscale
    (training and validation read them all in one run each: NORMALISED)."""
    refused_ = FILES[kind][2]
    cases = []
    if refused_:
        cases.append(
            Case(
                f"{kind} / training",
                kind,
                "training data",
                files=lambda s: in_a_folder(s, f"train-{slug(kind)}", kind, good=True),
                command=lambda s, f: s.c.train(slug(kind), "--dataset", f["folder"], "--val-dataset", "none"),
                expect=refused("file"),
            )
        )
        cases.append(
            Case(
                f"{kind} / validation",
                kind,
                "validation data",
                files=lambda s: beside_one_good(s, f"val-{slug(kind)}", kind),
                command=lambda s, f: s.c.train(
                    f"val-{slug(kind)}", "--dataset", s.good, "--val-dataset", f["folder"], steps=1
                ),
                expect=refused("file"),
            )
        )
    cases.append(
        Case(
            f"{kind} / evaluate",
            kind,
            "train/evaluate.py",
            files=lambda s: {
                **in_a_folder(s, f"eval-{slug(kind)}", kind),
                "report": s.root / f"eval-{slug(kind)}.json",
            },
            command=lambda s, f: s.c.evaluate(f["folder"], "--json", f["report"]),
            expect=refused("file") if refused_ else scores_like_the_reference,
        )
    )
    cases.append(
        Case(
            f"{kind} / upscale",
            kind,
            "export/upscale.py",
            files=lambda s: {
                **in_a_folder(s, f"up-{slug(kind)}", kind),
                "target": s.root / f"up-{slug(kind)}" / "out.png",
            },
            command=lambda s, f: s.c.upscale(f["file"], f["target"]),
            expect=refused("file") if refused_ else upscales_like_the_reference,
        )
    )
    return cases


# ---- sizes ---------------------------------------------------------------------------------------------------


def small_in_training(label, name, maker, option):
    """An image smaller than the patch (or than the scale) among the good ones, with --small-images `option`."""
    where = f"training data (--small-images {option})"

    def files(s):
        folder, _ = s.folder(f"train-{slug(name)}-{option}", [("tiny.png", maker)])
        return {"folder": folder, "file": folder / "tiny.png", "run": s.c.run_dir(f"{slug(name)}-{option}")}

    def trains(ran):
        images = 3 if option == "skip" else 4
        result = ran.suite.judge_trained(name, where, ran.outcome, ran.files["run"], images=images)
        if result.verdict == "handled":
            result.what = {
                "skip": "left out and counted (left_out_small in log.jsonl); trains on the rest",
                "pad": "mirror-padded to the patch size (LR and HR alike); trains",
            }[option]
        return result

    return Case(
        label,
        name,
        where,
        files,
        command=lambda s, f: s.c.train(
            f["run"], "--dataset", f["folder"], "--val-dataset", "none", "--small-images", option
        ),
        expect=refused("file") if option == "error" else trains,
    )


def one_pixel_cases():
    def dot_folder(name, *, beside=()):
        """A folder `name` holding dot.png (1x1) and the images `beside` [(file name, array)]."""

        def files(s):
            folder = s.root / name
            folder.mkdir()
            for file_name, image in beside:
                save_rgb(folder / file_name, image)
            make_one_pixel(folder / "dot.png")
            return {"folder": folder, "file": folder / "dot.png", "target": folder / "out.png"}

        return files

    good = [(f"good{seed}.png", base_image(seed=seed)) for seed in range(3)]  # as in Suite.good

    def upscales(ran):
        return ran.suite.judge_upscaled("1x1 image", ran.outcome, ran.files["target"], load_rgb(ran.files["file"]))

    return [
        small_in_training("1x1 image / training", "1x1 image", make_one_pixel, "error"),
        # --small-images pad cannot pad an image that has no LR pixel at all: it must be named, not crash.
        Case(
            "1x1 image / training pad",
            "1x1 image",
            "training data (--small-images pad)",
            files=dot_folder("train-1x1-pad", beside=good),
            command=lambda s, f: s.c.train(
                "1x1-pad", "--dataset", f["folder"], "--val-dataset", "none", "--small-images", "pad"
            ),
            expect=refused("file"),
        ),
        Case(
            "1x1 image / validation",
            "1x1 image",
            "validation data",
            files=dot_folder("val-1x1", beside=[("good.png", base_image(seed=5))]),
            command=lambda s, f: s.c.train("val-1x1", "--dataset", s.good, "--val-dataset", f["folder"], steps=1),
            expect=refused("file"),
        ),
        Case(
            "1x1 image / upscale",
            "1x1 image",
            "export/upscale.py",
            files=dot_folder("up-1x1"),
            command=lambda s, f: s.c.upscale(f["file"], f["target"]),
            expect=upscales,
        ),
        Case(
            "1x1 image / evaluate",
            "1x1 image",
            "train/evaluate.py",
            files=dot_folder("eval-1x1"),
            command=lambda s, f: s.c.evaluate(f["folder"]),
            expect=refused("file"),
        ),
    ]


# ---- folders and paths ---------------------------------------------------------------------------------------


def reading(s, where, folder, run_name):
    """The command that reads `folder` as `where` (one of WHERE)."""
    if where == "training data":
        return s.c.train(f"{run_name}-train", "--dataset", folder, "--val-dataset", "none")
    if where == "validation data":
        return s.c.train(f"{run_name}-val", "--dataset", s.good, "--val-dataset", folder)
    if where == "train/evaluate.py":
        return s.c.evaluate(folder)
    return s.c.upscale(folder, s.root / "out-empty")


def empty_folder(s, where):
    folder = s.root / f"empty-{slug(where)}"
    folder.mkdir()
    return {"folder": folder}


def notes_folder(s, where):
    folder = s.root / f"notes-{slug(where)}"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here\n")
    (folder / "labels.csv").write_text("a,b\n")
    return {"folder": folder}


def unicode_paths(s, where):
    case = "unicode and spaces in paths"
    folder = s.root / f"dónnées ünï 写真 {slug(where)}"
    folder.mkdir()
    image = base_image(seed=7)
    save_rgb(folder / "photo é 1.png", image)
    save_rgb(folder / "photo é 2.png", base_image(seed=8))
    if where == "training data":
        outcome, run_dir = s.train("unicode-train", "--dataset", str(folder), "--val-dataset", "none")
        return s.judge_trained(case, where, outcome, run_dir, images=2)
    if where == "validation data":
        run_dir = s.root / "runs" / "ü run"
        outcome, _ = s.train(run_dir, "--dataset", str(s.good), "--val-dataset", str(folder), steps=1)
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        problem = usable_run(run_dir)
        return Result(
            case,
            where,
            "lost" if problem else "handled",
            problem or "validates, run folder with ü works",
            outcome.seconds,
        )
    if where == "train/evaluate.py":
        report = folder.parent / f"report é {slug(where)}.json"  # beside the set: never inside an input folder
        outcome = run(s.c.evaluate(folder, "--json", report))
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        rows = json.loads(report.read_text())["images"]
        ok = [r["name"] for r in rows] == ["photo é 1", "photo é 2"]
        return Result(
            case,
            where,
            "handled" if ok else "lost",
            "scores both images, names kept" if ok else f"wrong rows {rows}",
            outcome.seconds,
        )
    target = folder / "sortie é.png"
    outcome = run(s.c.upscale(folder / "photo é 1.png", target))
    return s.judge_upscaled(case, outcome, target, image)


def mismatched_pair(where):
    def files(s):
        hr_dir, lr_dir, bad = make_mismatched_pair(s.root / f"pair-{slug(where)}")
        return {"hr": hr_dir, "lr": lr_dir, "file": bad}

    def command(s, f):
        if where == "training data":
            return s.c.train("pair-train", "--dataset", f["hr"], "--lr-dataset", f["lr"], "--val-dataset", "none")
        if where == "validation data":
            return s.c.train("pair-val", "--dataset", s.good, "--val-dataset", f["hr"].parent)
        return s.c.evaluate(f["hr"], "--lr", f["lr"])

    return Case(
        f"mismatched pair / {where}",
        "LR/HR pair whose sizes do not match the scale",
        where,
        files,
        command,
        refused("file"),
    )


def skip_corrupt(s):
    case = "every unreadable kind at once, --skip-corrupt true"
    bad = [(f"bad{i}{FILES[c][1]}", FILES[c][0]) for i, c in enumerate(FILES) if FILES[c][2]]
    folder, _ = s.folder("train-skip-corrupt", bad)
    outcome, run_dir = s.train(
        "skip-corrupt", "--dataset", str(folder), "--val-dataset", "none", "--skip-corrupt", "true", steps=3
    )
    where = "training data"
    if outcome.returncode != 0:
        return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
    problem = usable_run(run_dir)
    if problem:
        return Result(case, where, "lost", problem, outcome.seconds)
    log = read_log(run_dir)
    counted = log[0]["left_out_corrupt"] + max(r.get("skipped_images", 0) for r in log)
    named = all(name in outcome.stderr for name, _ in bad)
    if counted < 1 or not named:
        return Result(case, where, "other", f"skipped {counted}, warnings name every file: {named}", outcome.seconds)
    return Result(
        case,
        where,
        "handled",
        f"trains on the 3 good images; bad files named in a warning and counted "
        f"({log[0]['left_out_corrupt']} at the header check, the rest when read)",
        outcome.seconds,
    )


def cases():
    found = [
        Case(
            "odd but valid files / training",
            "",
            "training data",
            lambda s: normalised_folder(s, "train-normalised", "normalised", good=True),
            lambda s, f: s.c.train(f["run"], "--dataset", f["folder"], "--val-dataset", "none"),
            trains_on_all,
        ),
        Case(
            "odd but valid files / validation",
            "",
            "validation data",
            lambda s: normalised_folder(s, "val-normalised", "val-normalised", good=False),
            lambda s, f: s.c.train(f["run"], "--dataset", s.good, "--val-dataset", f["folder"], steps=1),
            validates_all,
        ),
    ]
    for kind in FILES:
        found += file_cases(kind)
    for option in ("error", "skip", "pad"):
        found.append(
            small_in_training(f"smaller than the patch / {option}", "image smaller than the patch", make_small, option)
        )
    found += one_pixel_cases()
    for where in WHERE:
        found.append(
            Case(
                f"empty folder / {where}",
                "empty folder",
                where,
                lambda s, w=where: empty_folder(s, w),
                lambda s, f, w=where: reading(s, w, f["folder"], "empty-folder"),
                refused("folder"),
            )
        )
        found.append(
            Case(
                f"non-images / {where}",
                "folder of only non-images",
                where,
                lambda s, w=where: notes_folder(s, w),
                lambda s, f, w=where: reading(s, w, f["folder"], "folder-of-only-non-images"),
                refused("folder"),
            )
        )
        found.append(Case(f"unicode / {where}", script=lambda s, w=where: unicode_paths(s, w)))
    for where in WHERE[:3]:
        found.append(mismatched_pair(where))
    found.append(Case("skip corrupt", script=skip_corrupt))
    return found
