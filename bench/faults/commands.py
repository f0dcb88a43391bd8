"""The command table: the one place that knows the command line of every command the suite runs.

Each method returns what follows `python` (harness.run and harness.start add it), for the suite's scratch folder:
its good images, its tiny model and its datasets cache. A case names a command and gives only what differs.
"""

from pathlib import Path

from bench.faults.harness import REPO, free_port

SCALE = 4
# A tiny PAN (8 channels, one block) on 8x8 LR patches keeps each training run to seconds.
# --repeat-images: folders of 1-3 images; the too-small case sets it false.
TINY = [
    "--model-overrides",
    "{channels: 8, upsample_channels: 8, num_blocks: 1}",
    "--lr-patch-size",
    "8",
    "--progress",
    "false",
    "--log-with",
    "none",
    "--num-threads",
    "1",
    "--batch-size",
    "2",
    "--log-every",
    "1",
    "--scale",
    str(SCALE),
    "--repeat-images",
    "true",
]
TINY_MODEL = {"channels": 8, "upsample_channels": 8, "num_blocks": 1}
LAUNCH_CONFIG = REPO / "launch_configs" / "cpu_ddp.yaml"  # 2 processes, DDP over gloo on the CPU


def injected(injection, command):
    """`command` run by bench/faults/injections.py's `injection`: its own main, with one function patched."""
    return ["-m", "bench.faults.injections", injection, *command]


class Commands:
    def __init__(self, root, *, good, weights, onnx):
        self.root, self.good, self.weights, self.onnx = Path(root), good, weights, onnx
        self.cache = self.root / "hf-cache"  # the datasets cache of every command: never the user's

    def run_dir(self, out):
        """A run folder: `out` itself, or the folder named `out` under runs/."""
        return out if isinstance(out, Path) else self.root / "runs" / out

    def train(self, out, *args, steps=2, tiny=True):
        """train/run.py writing the run folder `out` (run_dir), with the tiny model's options unless not `tiny`;
        `steps` None: no --steps (the recipe's, or one in `args`)."""
        return [
            "train/run.py",
            *(TINY if tiny else []),
            *(["--steps", str(steps)] if steps is not None else []),
            "--output-dir",
            str(self.run_dir(out)),
            "--cache-dir",
            str(self.cache),
            *args,
        ]

    def resume(self, run_dir, *args, checkpoint="latest"):
        """train/run.py continuing `run_dir` from `checkpoint` with the config it started with (no other options)."""
        return ["train/run.py", "--resume", str(checkpoint), "--output-dir", str(run_dir), *args]

    def recipe(self, recipe, *args):
        """train/run.py with a recipe file and nothing else but `args`."""
        return ["train/run.py", "--recipe", str(recipe), *args]

    def evaluate(self, hr, *args, weights=None, device="cpu"):
        """train/evaluate.py scoring the tiny model (or `weights`) on the folder `hr`."""
        return [
            "train/evaluate.py",
            "--weights",
            str(weights or self.weights),
            "--hr",
            str(hr),
            *args,
            "--device",
            device,
        ]

    def upscale(self, source, target, *args, model=None, device="cpu"):
        """export/upscale.py with the tiny ONNX model (or `model`): an image or a folder of them."""
        return ["export/upscale.py", str(model or self.onnx), str(source), str(target), "--device", device, *args]

    def to_onnx(self, output, *args, weights=None):
        """export/to_onnx.py exporting the tiny model's weights (or `weights`)."""
        return ["export/to_onnx.py", "--weights", str(weights or self.weights), "--output", str(output), *args]

    def prepare(self, dataset, output, *args, scale=SCALE, cache=None):
        """python -m train.data prepare: sub-images (or, with --store, a decoded store) of `dataset`."""
        return [
            "-m",
            "train.data",
            "prepare",
            "--dataset",
            str(dataset),
            "--output",
            str(output),
            "--scale",
            str(scale),
            *args,
            "--cache-dir",
            str(cache or self.cache),
        ]

    def launch(self, command):
        """`command` (train/run.py's, or an injected one) under `accelerate launch` with 2 processes."""
        script = ["--module", *command[1:]] if command[0] == "-m" else command
        return [
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(LAUNCH_CONFIG),
            "--main_process_port",
            str(free_port()),
            *script,
        ]

    def sr_launch(self, command, *, processes):
        """`command` under sr-launch (python -m train.launch), with 1 process or 2 (launch_configs/cpu_ddp.yaml)."""
        two = ["--config_file", str(LAUNCH_CONFIG), "--main_process_port", str(free_port())] if processes == 2 else []
        return ["-m", "train.launch", *two, *command]
