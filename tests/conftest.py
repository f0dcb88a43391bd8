from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Read-only reference data (Set5, the PAN authors' weights) lives beside the repository, never inside it.
SHARED = REPO.parent / "shared" / "data"

needs_shared = pytest.mark.skipif(
    not (SHARED / "Set5" / "HR").is_dir(),
    reason=f"reference data not found at {SHARED} (Set5 and the PAN authors' weights live in ../shared)",
)


def smooth_photos(folder, *, count, blocks=(12, 14), seed=0):
    """`count` photo-like images of 8x8-pixel blocks (blocks x 8 pixels): smooth enough for finite PSNR, quick to
    decode. Returns the folder."""
    from sr_models.images import save_rgb

    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, size=(*blocks, 3), dtype=np.uint8)
        save_rgb(Path(folder) / f"p{i}.png", np.kron(small, np.ones((8, 8, 1), dtype=np.uint8)))
    return Path(folder)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of six small smooth photos-like images, 96 x 112 (quicker to decode than the built-in set)."""
    return smooth_photos(tmp_path_factory.mktemp("photos"), count=6)


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps process-wide singletons (mixed precision, accumulation steps); every in-process training
    run must start without them, and leave torch's thread count as it found it."""
    from accelerate.state import AcceleratorState, GradientState

    threads = torch.get_num_threads()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.set_num_threads(threads)


def train_in_process(argv):
    """train/run.py's main as a new process would run it, from a clean Accelerate state; returns the run folder."""
    from accelerate.state import AcceleratorState, GradientState

    from train.run import main

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return main(argv)


def train_config_in_process(config):
    """train/run.py's train(config) from a clean Accelerate state, the run folder let go as main does; returns the
    run folder."""
    from accelerate.state import AcceleratorState, GradientState

    from train.run import train
    from train.run_folder import RunFolderLock

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    try:
        return train(config)
    finally:
        RunFolderLock.release_all()


def reference_lrs(config):
    """The learning-rate schedule of `config` stepped by hand once per optimizer step, in one process."""
    from train.optim import make_optimizer, make_scheduler

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer(config, [parameter])
    scheduler = make_scheduler(config, optimizer)
    rates = []
    for _ in range(config.steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates
