"""Geometric self-ensemble: the x8 test-time augmentation of EDSR (Lim et al. 2017), RCAN and BasicSR.

The model runs on the 8 flips/rotations of its input (the dihedral group of the square); each output is turned
back and the 8 are averaged before clamping and rounding, as BasicSR's `test_selfensemble` does. A network that
is not exactly equivariant to these transforms (none of ours is) gains a little PSNR for 8 times the compute.

numpy only: the torch-free deployment path (`export/runtime.py`) and the scorer (`sr_models.evaluation.scoring`)
share this function.
"""

import numpy as np

# (flip the width axis first?, quarter turns): the 8 elements of the dihedral group D4.
TRANSFORMS = [(flip, turns) for flip in (False, True) for turns in range(4)]


def self_ensemble(run, batch):
    """Mean over the 8 transforms T of T^-1(run(T(batch))).

    batch: (N, C, h, w) float array; run: (N, C, h', w') -> (N, C, h' * scale, w' * scale) float array (the
    model, unclamped). Returns (N, C, h * scale, w * scale) float32.
    """
    total = None
    for flip, turns in TRANSFORMS:
        x = np.rot90(batch[..., ::-1] if flip else batch, turns, axes=(-2, -1))
        y = np.rot90(run(np.ascontiguousarray(x)), -turns, axes=(-2, -1))  # undo the turns, then the flip
        y = y[..., ::-1] if flip else y
        total = y.astype(np.float64) if total is None else total + y  # float64 sum: order-independent enough
    return (total / len(TRANSFORMS)).astype(np.float32)
