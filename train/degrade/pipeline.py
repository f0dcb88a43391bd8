"""Real-ESRGAN's second-order degradation (realesrgan_model.py, feed_data), applied to a batch of HR patches.

Per sample, in Real-ESRGAN's order:
    blur -> random resize -> noise -> JPEG                          first pass
    blur (second_blur_prob) -> random resize -> noise               second pass (resize relative to the LR size)
    then, with chance 1/2 each: resize to the LR size + final sinc -> JPEG, or JPEG -> resize + final sinc
    -> clamp and round to 8-bit levels

Every random draw of sample i comes from generators seeded only by (seed, indices[i]): a numpy Generator for the
parameters and a CPU torch.Generator (seeded from it) for the noise, drawn on the CPU and then moved. So the LR of
a patch is a pure function of (seed, index, the patch): the same in any batch, batch order or size, on the CPU
and on CUDA (parameters and noise; the float arithmetic of each device may differ in the last bits), and a run
resumed mid-epoch sees exactly the degradations of an uninterrupted one. Samples differ in kernel sizes and
resize scales, so the batch is processed one sample at a time.
"""

from collections import Counter

import numpy as np
import torch

from train.degrade.jpeg import jpeg
from train.degrade.kernels import blur, random_kernel, random_sinc
from train.degrade.noise import gaussian_noise, poisson_noise
from train.degrade.options import DegradeOptions
from train.degrade.resize import draw_resize, final_size, resize

STREAM = 0xDE6  # the third word of each sample's seed: keeps these draws apart from other users of (seed, index)


class Degrader:
    """Degrades HR patches into LR ones: `lr, drawn = degrader(hr, indices)`.

    Args:
        options: the DegradeOptions (probabilities and ranges)
        scale: the upscaling factor; the LR is exactly (H // scale, W // scale)
        seed: the run's seed; with a sample's index it decides everything drawn for that sample
    """

    def __init__(self, *, options: DegradeOptions, scale: int, seed: int):
        assert isinstance(options, DegradeOptions), f"options must be a DegradeOptions, got {type(options).__name__}"
        assert scale >= 1 and seed >= 0, f"scale {scale} must be >= 1 and seed {seed} >= 0"
        self.options, self.scale, self.seed = options, int(scale), int(seed)

    def __call__(self, hr, indices, bicubic_lr=None):
        """`hr` (B, 3, H, W) float in 0..1, H and W multiples of scale, on any device; `indices` the B global
        sample indices; `bicubic_lr` (B, 3, H/s, W/s) in 0..1, needed when options.bicubic_share > 0.
        Returns the LR (B, 3, H/s, W/s) float32 on 8-bit levels, on hr's device, and one dict per sample of what
        was drawn for it."""
        b, c, h, w = hr.shape
        indices = [int(i) for i in indices]
        if c != 3 or h % self.scale or w % self.scale:
            raise ValueError(f"hr must be (B, 3, H, W) with H and W multiples of {self.scale}, got {tuple(hr.shape)}")
        if len(indices) != b or min(indices, default=0) < 0:
            raise ValueError(f"indices must be {b} non-negative sample indices, got {indices}")
        lr_size = final_size(hr.shape, self.scale)
        if self.options.bicubic_share > 0:
            if bicubic_lr is None:
                raise ValueError("bicubic_share > 0 needs bicubic_lr: the clean LR of each patch, given by the caller")
            if tuple(bicubic_lr.shape) != (b, 3, *lr_size):
                raise ValueError(f"bicubic_lr must be {(b, 3, *lr_size)}, got {tuple(bicubic_lr.shape)}")

        hr = hr.to(torch.float32)
        lrs, drawn = [], []
        for i, index in enumerate(indices):
            rng = np.random.default_rng([self.seed, index, STREAM])
            generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
            # drawn even when the share is 0, so the share never changes the other samples' degradations
            if rng.random() < self.options.bicubic_share:
                lrs.append(bicubic_lr[i : i + 1].to(hr.device, torch.float32))
                drawn.append({"bicubic": True})
                continue
            lr, params = self._degrade(hr[i : i + 1], lr_size, rng, generator)
            lrs.append(lr)
            drawn.append(params)
        return torch.cat(lrs), drawn

    def _degrade(self, img, lr_size, rng, generator):
        """One sample (1, 3, H, W) -> (1, 3, *lr_size), and its parameters."""
        options, first, second = self.options, self.options.first, self.options.second
        modes = options.resize_modes
        params = {"bicubic": False}

        # ---- first pass
        img, params["blur_1"] = self._blur(img, rng, first)
        params["resize_1"] = draw_resize(rng, probs=first.resize_prob, scale_range=first.resize_range, modes=modes)
        s = params["resize_1"]["scale"]
        img = resize(img, (img.shape[-2] * s, img.shape[-1] * s), params["resize_1"]["mode"])
        img, params["noise_1"] = self._noise(img, rng, generator, first)
        params["jpeg_1"] = int(rng.integers(first.jpeg_range[0], first.jpeg_range[1] + 1))
        img = jpeg(img, params["jpeg_1"])

        # ---- second pass
        params["blur_2"] = None
        if rng.random() < options.second_blur_prob:
            img, params["blur_2"] = self._blur(img, rng, second)
        params["resize_2"] = draw_resize(rng, probs=second.resize_prob, scale_range=second.resize_range, modes=modes)
        s = params["resize_2"]["scale"]  # relative to the LR size, as Real-ESRGAN: ori_h / scale * s
        img = resize(img, (lr_size[0] * s, lr_size[1] * s), params["resize_2"]["mode"])
        img, params["noise_2"] = self._noise(img, rng, generator, second)

        # ---- final: resize + sinc and JPEG, in either order
        params["final_sinc"] = None
        if rng.random() < options.final_sinc_prob:
            sinc, params["final_sinc"] = random_sinc(rng, max_size=options.blur_kernel_size)
        else:
            sinc = None
        params["final_order"] = "resize_first" if rng.random() < 0.5 else "jpeg_first"
        params["final_mode"] = modes[int(rng.integers(len(modes)))]
        params["jpeg_2"] = int(rng.integers(second.jpeg_range[0], second.jpeg_range[1] + 1))
        if params["final_order"] == "jpeg_first":
            img = jpeg(img, params["jpeg_2"])
        img = resize(img, lr_size, params["final_mode"])
        if sinc is not None:
            img = blur(img, sinc)
        if params["final_order"] == "resize_first":
            img = jpeg(img, params["jpeg_2"])
        return torch.clamp(torch.round(img * 255), 0, 255) / 255, params

    def _blur(self, img, rng, options):
        kernel, params = random_kernel(
            rng,
            kinds=options.kernel_list,
            probs=options.kernel_prob,
            max_size=self.options.blur_kernel_size,
            sinc_prob=options.sinc_prob,
            sigma_range=options.blur_sigma,
            betag_range=options.betag_range,
            betap_range=options.betap_range,
        )
        return blur(img, kernel), params

    @staticmethod
    def _noise(img, rng, generator, options):
        gray = bool(rng.random() < options.gray_noise_prob)
        if rng.random() < options.gaussian_noise_prob:
            sigma = float(rng.uniform(*options.noise_range))
            noise = gaussian_noise(img, sigma=sigma, gray=gray, generator=generator)
            params = {"kind": "gaussian", "sigma": sigma, "gray": gray}
        else:
            scale = float(rng.uniform(*options.poisson_scale_range))
            noise = poisson_noise(img, scale=scale, gray=gray, generator=generator)
            params = {"kind": "poisson", "scale": scale, "gray": gray}
        return torch.clamp(img + noise, 0, 1), params


def summarize(drawn):
    """Compact statistics of a batch's drawn parameters, for one log line."""
    degraded = [d for d in drawn if not d.get("bicubic")]
    blurs = [d[key] for d in degraded for key in ("blur_1", "blur_2") if d[key] is not None]
    sigmas = [b["sigma_x"] for b in blurs if "sigma_x" in b]
    noises = [d[key] for d in degraded for key in ("noise_1", "noise_2")]
    qualities = [d[key] for d in degraded for key in ("jpeg_1", "jpeg_2")]

    def mean(values):
        return round(float(np.mean(values)), 3) if values else None

    def share(count, total):
        return round(count / total, 3) if total else None

    return {
        "samples": len(drawn),
        "bicubic": len(drawn) - len(degraded),
        "kernels": dict(sorted(Counter(b["kind"] for b in blurs).items())),
        "mean_sigma": mean(sigmas),
        "second_blur": share(sum(d["blur_2"] is not None for d in degraded), len(degraded)),
        "gaussian_noise": share(sum(n["kind"] == "gaussian" for n in noises), len(noises)),
        "gray_noise": share(sum(n["gray"] for n in noises), len(noises)),
        "mean_noise_sigma": mean([n["sigma"] for n in noises if n["kind"] == "gaussian"]),
        "mean_jpeg_quality": mean(qualities),
        "final_sinc": share(sum(d["final_sinc"] is not None for d in degraded), len(degraded)),
    }
