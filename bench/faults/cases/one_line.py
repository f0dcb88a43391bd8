"""One line for anything a user can cause (rule 5), bounded ONNX opening (rule 4, models): nesting too deep for a
parser, options out of range, an error under the launcher or in a DataLoader worker, ONNX models that fail on an
image, loop for ever or ask for gigabytes. tests/test_one_line.py tests the same rules in-process."""

from bench.faults.case import Case, exists, refused
from bench.faults.harness import error_line, slug
from bench.faults.makers import (
    make_blowing_up_onnx,
    make_deep_json_weights,
    make_deep_yaml,
    make_failing_onnx,
    make_looping_onnx,
    make_truncated,
)

ONNX_READERS = ("export/upscale.py", "train/evaluate.py")


def deep_recipe(name, depth):
    def files(s):
        make_deep_yaml(s.root / name, depth)
        return {"recipe": s.root / name}

    return files


def opset(number):
    return Case(
        f"one line / --opset {number}",
        f"--opset {number}",
        "export/to_onnx.py",
        lambda s: {"target": s.root / f"opset-{number}.onnx"},
        lambda s, f: s.c.to_onnx(f["target"], "--opset", number),
        refused(
            f"--opset {number}", one_line=True, unless=[(exists("target"), "lost", "refused, yet wrote the model")]
        ),
    )


def launched_user_error(processes):
    return Case(
        f"one line / sr-launch, {processes} process{'es' if processes > 1 else ''}",
        "user error under the launcher",
        f"sr-launch ({processes} process(es))",
        deep_recipe(f"deep-launched-{processes}.yaml", 2000),
        lambda s, f: s.c.sr_launch(
            s.c.recipe(f["recipe"], "--output-dir", s.c.run_dir(f"launched-{processes}")), processes=processes
        ),
        refused("recipe", one_line=True),
    )


def deep_json_weights(s):
    make_deep_json_weights(s.root / "deep-json.safetensors")
    return {"weights": s.root / "deep-json.safetensors"}


def worker_folder(s):
    folder, _ = s.folder("train-worker-truncated", [("cut.png", make_truncated)])
    return {"folder": folder, "file": folder / "cut.png"}


def onnx_reading(s, where, model, target):
    """export/upscale.py of good0.png into `target`, or train/evaluate.py of the good images, with `model`."""
    if where == "export/upscale.py":
        return s.c.upscale(s.good / "good0.png", target, model=model)
    return s.c.evaluate(s.good, weights=model)


def failing_on_an_image(where):
    """Valid ONNX that runs on the small inputs probed at open and fails in onnxruntime on the real image."""

    def files(s):
        path = make_failing_onnx(s.root / f"size-limit-{slug(where)}.onnx")
        return {"model": path, "target": s.root / "size-limit.png", "image": s.good / "good0.png"}

    written = [(exists("target"), "lost", "wrote an image")] if where == "export/upscale.py" else []

    def names_the_image(ran):
        result = refused("model", one_line=True, never=written)(ran)
        if result.verdict == "handled" and str(ran.files["image"]) not in error_line(ran.outcome):
            return ran.result("other", "one line, but the image is not named")
        return result

    return Case(
        f"one line / ONNX failing on an image / {where}",
        "ONNX model failing in onnxruntime on an image",
        where,
        files,
        lambda s, f: onnx_reading(s, where, f["model"], f["target"]),
        names_the_image,
    )


def looping(where):
    """A 500-byte model whose Loop runs 2^62 times: refused at open, not run."""

    def files(s):
        return {"model": make_looping_onnx(s.root / f"loop-{slug(where)}.onnx")}

    return Case(
        f"one line / ONNX with a 2^62-trip Loop / {where}",
        lambda f: f"ONNX model ({f['model'].stat().st_size} bytes) with a 2^62-trip Loop",
        where,
        files,
        lambda s, f: onnx_reading(s, where, f["model"], s.root / "loop.png"),
        refused("model", one_line=True),
        timeout=60,
    )


def blowing_up(where, computed):
    """A 300-byte model that resizes its input up by 4096 and back down to x4: refused at open, in bounded memory
    (the run is capped at 16 GB of address space, so that a regression fails the case, not the machine)."""

    def files(s):
        return {
            "model": make_blowing_up_onnx(s.root / f"blow-up-{computed}-{slug(where)}.onnx", computed),
            "target": s.root / f"blow-up-{computed}.png",
        }

    return Case(
        f"one line / ONNX asking 12 GB on its probe, {'computed' if computed else 'constant'} scales / {where}",
        lambda f: f"ONNX model ({f['model'].stat().st_size} bytes) asking 12 GB on its probe",
        where,
        files,
        lambda s, f: onnx_reading(s, where, f["model"], f["target"]),
        refused("model", one_line=True, never=[(exists("target"), "lost", "wrote an image")]),
        timeout=60,
        memory_limit=16 << 30,
    )


def cases():
    found = [
        Case(
            "one line / deep YAML recipe",
            "recipe YAML nested 5000 deep",
            "train/run.py",
            deep_recipe("deep.yaml", 5000),
            lambda s, f: s.c.recipe(f["recipe"], "--output-dir", s.c.run_dir("deep")),
            refused("recipe", one_line=True),
            timeout=60,
        ),
        Case(
            "one line / deep --model-overrides",
            "--model-overrides nested 3000 deep",
            "train/run.py",
            None,
            lambda s, f: s.c.train(
                "deep-overrides", "--model-overrides", "{a: " * 3000 + "}" * 3000, steps=None, tiny=False
            ),
            refused("model_overrides", one_line=True),
            timeout=60,
        ),
        Case(
            "one line / deep JSON in weights metadata",
            "safetensors metadata JSON nested 100000 deep",
            "train/evaluate.py",
            deep_json_weights,
            lambda s, f: s.c.evaluate(s.good, weights=f["weights"]),
            refused("weights", one_line=True),
        ),
        opset(16),
        opset(21),
        launched_user_error(1),
        launched_user_error(2),
        # Decoded in a worker, the error reaches the trainer wrapped in the worker's traceback; the workers ignore
        # SIGTERM, and once kept the process from ending.
        Case(
            "one line / data error in a DataLoader worker",
            "truncated PNG decoded in a DataLoader worker",
            "train/run.py",
            worker_folder,
            lambda s, f: s.c.train(
                "worker-truncated",
                "--dataset",
                f["folder"],
                "--val-dataset",
                "none",
                "--num-workers",
                "1",
                "--cache-images",
                "false",
                steps=20,
            ),
            refused("file", one_line=True),
        ),
    ]
    for where in ONNX_READERS:
        found += [failing_on_an_image(where), looping(where), blowing_up(where, False), blowing_up(where, True)]
    return found
