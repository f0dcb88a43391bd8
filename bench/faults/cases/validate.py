"""Rule 3 (validate structure, not totals) and the training half of rule 4 (memory estimated before allocation):
decoded stores, checkpoint manifests, init weights, recipes, other programs' files, metric weights."""

import json

from bench.faults.case import Case, exists, refused, scripted
from bench.faults.harness import Result, describe_failure, judge_refusal, read_log, run, slug
from bench.faults.makers import (
    DAMAGED_STORES,
    add_other_programs_files,
    damage_store,
    flip_byte,
    make_bad_init_weights,
    make_int_keys_pth,
    make_stand_in_metric_weights,
)


def damaged_store(kind):
    def files(s):
        store = s.store_copy(f"store-{kind}")
        return {
            "store": store,
            "names": damage_store(store, kind),
            "weights": s.c.run_dir(f"store-{kind}") / "model.safetensors",
        }

    def command(s, f):
        return s.c.train(f"store-{kind}", "--dataset", f["store"], "--val-dataset", "none")

    return Case(
        f"validate / store {kind}",
        DAMAGED_STORES[kind],
        "train/run.py (decoded store)",
        files,
        command,
        refused("names", unless=[(exists("weights"), "lost", "refused, but final weights were written")]),
    )


def set_up_run(s, case, where, name):
    """A 3-step run stopped after its step-1 checkpoint: (its folder, None), or (None, the Result if it failed)."""
    outcome, run_dir = s.train(name, "--dataset", s.good, "--val-dataset", "none", "--stop-after", "1", steps=3)
    if outcome.returncode != 0:
        return None, Result(case, where, "other", "set-up run failed: " + describe_failure(outcome))
    return run_dir, None


def manifest_edited(s):
    case = "checkpoint whose manifest was edited to drop a damaged file's entry"
    run_dir, failed = set_up_run(s, case, "train/run.py --resume", "manifest")
    if failed:
        return failed
    checkpoint = run_dir / "checkpoints" / "step-00000001"
    optimizer = checkpoint / "optimizer.bin"
    flip_byte(optimizer, optimizer.stat().st_size // 2, 0x01)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    del manifest["optimizer.bin"]  # the lie: the damaged file is no longer listed, the totals of the rest hold
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    resumed = run(s.c.resume(run_dir))
    return judge_refusal(case, "train/run.py --resume", resumed, names=str(optimizer))


def checkpoint_file_removed(s):
    case = "checkpoint with a file removed together with its manifest entry"
    run_dir, failed = set_up_run(s, case, "train/run.py --resume", "removed")
    if failed:
        return failed
    checkpoint = run_dir / "checkpoints" / "step-00000001"
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    del manifest["scheduler.bin"]  # the manifest no longer lies about a file: it is simply gone from both
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    (checkpoint / "scheduler.bin").unlink()
    resumed = run(s.c.resume(run_dir))
    return judge_refusal(case, "train/run.py --resume", resumed, names=str(checkpoint / "scheduler.bin"))


def bad_init_weights(kind):
    case = {
        "nan": "init weights holding NaN (--init-strict false)",
        "int": "init weights with an integer tensor (--init-strict false)",
    }[kind]

    def files(s):
        path = s.root / f"init-{kind}.pth"
        make_bad_init_weights(path, s.weights, kind)
        return {"weights": path}

    return Case(
        f"validate / init {kind} non-strict",
        case,
        "train/run.py --init-weights",
        files,
        lambda s, f: s.c.train(
            f"init-{kind}",
            "--dataset",
            s.good,
            "--val-dataset",
            "none",
            "--init-weights",
            f["weights"],
            "--init-strict",
            "false",
        ),
        refused("weights"),
    )


def recipe_resume_contradiction(s):
    case = "a recipe's resume: with a key that contradicts the checkpoint (lr)"
    run_dir, failed = set_up_run(s, case, "train/run.py --recipe", "recipe-resume")
    if failed:
        return failed
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    recipe = s.root / "resume-recipe.yaml"
    recipe.write_text(f"resume: latest\noutput_dir: {run_dir}\nlr: 0.5\n")
    resumed = run(s.c.recipe(recipe))
    result = judge_refusal(case, "train/run.py --recipe", resumed, names="-> 0.5")
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    if result.verdict == "handled" and after != before:
        return Result(case, result.where, "lost", "refused, but the run folder changed", resumed.seconds)
    return result


def other_programs(s):
    folder, _ = s.folder("other-programs")
    add_other_programs_files(folder)
    return {"folder": folder, "run": s.c.run_dir("other-programs")}


def trains_on_the_3_images(ran):
    if ran.outcome.returncode != 0:
        return ran.result("other", describe_failure(ran.outcome))
    first = read_log(ran.files["run"])[0]
    if first.get("train_images") != 3:
        return ran.result("lost", f"trained on {first.get('train_images')} of the 3 images")
    if "ignored" not in ran.outcome.stderr:
        return Result(ran.name, ran.where, "other", "trained on every image, but said nothing of the ignored files")
    return ran.result("handled", "trains on all 3 images; one line names the 6 files ignored")


def non_string_keys(where):
    def files(s):
        path = s.root / "int-keys.pth"
        with s.lock:  # both cases share the file
            if not path.exists():
                make_int_keys_pth(path, s.weights)
        return {"weights": path}

    def command(s, f):
        if where == "train/evaluate.py":
            return s.c.evaluate(s.good, "--model", "pan", "--scale", "4", weights=f["weights"])
        return s.c.train(
            "int-keys",
            "--dataset",
            s.good,
            "--val-dataset",
            "none",
            "--init-weights",
            f["weights"],
            "--init-strict",
            "false",
        )

    return Case(
        f"validate / pth non-string keys / {where}",
        ".pth whose state_dict has non-string keys",
        where,
        files,
        command,
        refused("weights"),
    )


def wrong_hash_metric(where):
    def files(s):
        folder = s.root / f"metric-weights-{slug(where)}"
        folder.mkdir()
        path = folder / "pt_inception-2015-12-05-6726825d.pth"
        make_stand_in_metric_weights(path)
        return {"folder": folder, "weights": path}

    def command(s, f):
        if where == "train/evaluate.py":
            return s.c.evaluate(s.good, "--metrics", "psnr,fid", "--metrics-weights", f["folder"])
        return s.c.train(
            "metric-hash", "--dataset", s.good, "--val-dataset", s.good, "--val-metrics", "psnr,fid", steps=1
        )

    def env(s, f):
        found = {"TORCH_HOME": str(s.root / "torch-home")}  # not the user's hub cache
        return found if where == "train/evaluate.py" else {**found, "SR_METRICS_WEIGHTS": str(f["folder"])}

    return Case(
        f"validate / metric weights wrong hash / {where}",
        "metric weights given locally with a wrong hash (pt_inception-...-6726825d.pth)",
        where,
        files,
        command,
        refused("weights"),
        env=env,
    )


def cases():
    found = [damaged_store(kind) for kind in DAMAGED_STORES]
    found += [
        scripted("validate / manifest edited", manifest_edited),
        scripted("validate / checkpoint file removed with its entry", checkpoint_file_removed),
        bad_init_weights("nan"),
        bad_init_weights("int"),
        scripted("validate / recipe resume contradiction", recipe_resume_contradiction),
        Case(
            "validate / metadata.jsonl in the folder",
            "metadata.jsonl (listing 1 image), metadata.csv, Thumbs.db, .DS_Store, __MACOSX/, .xmp in the photo folder",
            "training data",
            other_programs,
            lambda s, f: s.c.train(
                f["run"], "--dataset", f["folder"], "--val-dataset", "none", "--repeat-images", "false"
            ),
            trains_on_the_3_images,
        ),
        Case(
            "validate / huge patch with pad",
            "--lr-patch-size 4096 --small-images pad",
            "train/run.py",
            lambda s: {"run": s.c.run_dir("huge-patch")},
            lambda s, f: s.c.train(
                f["run"],
                "--dataset",
                s.good,
                "--val-dataset",
                "none",
                "--small-images",
                "pad",
                "--lr-patch-size",
                "4096",
                "--batch-size",
                "8",
            ),
            refused("--lr-patch-size", unless=[(exists("run"), "lost", "refused, but a run folder was made")]),
        ),
    ]
    found += [non_string_keys(where) for where in ("train/run.py --init-weights", "train/evaluate.py")]
    found += [wrong_hash_metric(where) for where in ("train/evaluate.py", "train/run.py")]
    return found
