"""Real-ESRGAN-style degradations made on the fly: a clean HR batch in, a degraded LR batch out (pure torch).

    degrader = Degrader(options=DegradeOptions(), scale=4, seed=0)
    lr, drawn = degrader(hr, indices)        # hr (B, 3, H, W) in 0..1; lr (B, 3, H/4, W/4) on 8-bit levels
    log(summarize(drawn))

The degradation of a patch is a pure function of (seed, its index in the run): see pipeline.py.
"""

from train.degrade.options import DegradeOptionError, DegradeOptions
from train.degrade.pipeline import Degrader, summarize

__all__ = ["DegradeOptionError", "DegradeOptions", "Degrader", "summarize"]
