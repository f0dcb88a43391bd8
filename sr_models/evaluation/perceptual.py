"""LPIPS, FID and Inception Score for super-resolution, with the field's standard weights (docs/metrics.md).

- LPIPS (Zhang et al. 2018, v0.1, AlexNet): per image, lower is closer to HR.
- FID (Heusel et al. 2017): per set, the Frechet distance between Gaussians fitted to the Inception pool3
  features of SR patches and HR patches; lower is closer.
- IS (Salimans et al. 2016): per set, exp E[KL(p(y|x) || p(y))] of the Inception class posteriors; needs no HR,
  higher means "more confidently classifiable and varied", which is not the same as faithful.

FID and IS describe distributions: on a 5-image benchmark they are computed over non-overlapping HR patches (the
same positions cut from SR, bicubic and HR; `patches`), and the report says how many patches that was.

Weights are never bundled: each file is looked up in `weights_dir` (--metrics-weights, or $SR_METRICS_WEIGHTS),
then in torch's hub cache (where torchvision and pytorch-fid put the same files), then in an installed lpips or
torchmetrics package (the LPIPS linear layers ship inside them: the `[metrics]` extra), then downloaded into the
hub cache. Whatever is still missing stops the command with one line per file: which, where from, where to. That
search and the download live in sr_models/evaluation/perceptual_weights.py, the networks in sr_models/feature_nets.py.
"""

import numpy as np
import torch

from sr_models.errors import UserError
from sr_models.evaluation.perceptual_weights import ALEXNET, INCEPTION, LPIPS_LINEAR, WEIGHTS_FOR, find_weights
from sr_models.feature_nets import AlexNetFeatures, FidInceptionV3, Lpips
from sr_models.weights import load_state_dict_strict, read_state_dict

METRICS = ("psnr", "ssim", "lpips", "fid", "is")
DEFAULT_METRICS = ("psnr", "ssim")
DEFAULT_PATCH = 64  # HR pixels; docs/metrics.md explains the choice
FEATURE_DIM = 2048  # pool3: below this many patches the FID covariance is singular (docs/metrics.md)
IS_SPLITS = 10  # as Salimans et al. and every IS implementation since


def parse_metrics(text):
    """'psnr,ssim,lpips' -> ('psnr', 'ssim', 'lpips'); unknown names fail listing the valid ones."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UserError(f"unknown metric(s) {', '.join(unknown) or repr(text)}; choose from {','.join(METRICS)}")
    return names


# ---------------------------------------------------------------- the networks, from their weight files


def load_lpips(found):
    """LPIPS-Alex from the AlexNet file (its `features.*` only) and the linear-layer file."""
    backbone_path, lin_path = found[ALEXNET], found[LPIPS_LINEAR]
    model = Lpips(AlexNetFeatures())
    state = {f"net.{k}": v for k, v in read_state_dict(backbone_path).items() if k.startswith("features.")}
    state.update({k.replace("lin", "lins.", 1): v for k, v in read_state_dict(lin_path).items()})
    return _load_state(model, state, source=f"{backbone_path} + {lin_path}")


def _load_state(model, state, *, source):
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") or key in ("shift", "scale"):  # not in the files: constants
            state.setdefault(key, value)
    load_state_dict_strict(model, state, source=source)
    return model.eval().requires_grad_(False)


def load_inception(found):
    path = found[INCEPTION]
    return _load_state(FidInceptionV3(), dict(read_state_dict(path)), source=str(path))


# ---------------------------------------------------------------- formulas (numpy, float64)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2) between two Gaussians.

    tr((S1 S2)^1/2) is computed as the sum of the square roots of the eigenvalues of S1^1/2 S2 S1^1/2, which is
    symmetric positive semi-definite and similar to S1 S2: eigh only, no complex parts and no sqrtm iteration,
    so it also holds for the singular covariances of fewer samples than features.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # S1^1/2
    middle = root1 @ sigma2 @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


def inception_score(logits, splits=IS_SPLITS):
    """(mean, std) over `splits` consecutive parts of exp(mean_x KL(p(y|x) || p(y))), p = softmax(logits)."""
    logits = np.asarray(logits, dtype=np.float64)
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))  # log softmax
    n, splits = len(log_p), min(splits, len(log_p))
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]  # the original code's split boundaries
        top = part.max(axis=0)  # log of the mean probability per class, as a log-sum-exp: no log(0) for rare classes
        log_marginal = top + np.log(np.exp(part - top).mean(axis=0))
        scores.append(np.exp((np.exp(part) * (part - log_marginal)).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def patches(image, size):
    """Non-overlapping size x size patches of an (H, W, 3) image from the top-left: (n, size, size, 3)."""
    rows, columns = image.shape[0] // size, image.shape[1] // size
    cut = image[: rows * size, : columns * size]
    return cut.reshape(rows, size, columns, size, 3).swapaxes(1, 2).reshape(-1, size, size, 3)


# ---------------------------------------------------------------- one evaluation's scorer


class RunningGaussian:
    """Mean and covariance of features added in chunks: constant memory however many patches a set has."""

    def __init__(self):
        self.count, self.total, self.outer = 0, 0.0, 0.0

    def add(self, features):
        features = np.asarray(features, dtype=np.float64)
        self.count += len(features)
        self.total = self.total + features.sum(axis=0)
        self.outer = self.outer + features.T @ features

    def stats(self):
        if self.count < 2:
            raise UserError(f"FID needs at least 2 patches, got {self.count}: use a smaller --fid-patch")
        mean = self.total / self.count
        return mean, (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)


class PerceptualScorer:
    """LPIPS per image and FID/IS per set, for the model and bicubic columns of one evaluation.

    `image(sr, bicubic, hr, crop=scale)` returns the per-image figures and keeps the set's features; `finish()`
    returns the set figures and starts a new set. Networks may be passed in (tests use small known ones).
    """

    def __init__(
        self, metrics, *, device="cpu", weights_dir=None, patch=DEFAULT_PATCH, lpips=None, inception=None, batch_size=64
    ):
        self.metrics = tuple(metrics)
        wants_set = bool({"fid", "is"} & set(self.metrics))
        given = {"lpips": lpips is not None, "fid": inception is not None, "is": inception is not None}
        need = [m for m in self.metrics if m in WEIGHTS_FOR and not given[m]]
        found = find_weights(need, weights_dir) if need else {}
        self.device = torch.device(device)
        if "lpips" in self.metrics:
            self.lpips = (lpips if lpips is not None else load_lpips(found)).to(self.device)
        else:
            self.lpips = None
        if wants_set:
            self.inception = (inception if inception is not None else load_inception(found)).to(self.device)
        else:
            self.inception = None
        if patch < 16:
            raise UserError(f"--fid-patch {patch}: use at least 16 HR pixels (each patch is resized to 299)")
        self.patch, self.batch_size = patch, batch_size
        self._reset()

    def _reset(self):
        self.gaussians = {column: RunningGaussian() for column in ("sr", "bicubic", "hr")}
        self.logits = {column: [] for column in ("sr", "bicubic", "hr")}

    def _tensor(self, images):  # (N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1] on the device
        return torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255

    @torch.inference_mode()
    def image(self, sr, bicubic, hr, *, crop):
        if crop:
            sr, bicubic, hr = (x[crop:-crop, crop:-crop] for x in (sr, bicubic, hr))
        figures = {}
        if self.lpips is not None:
            target = self._tensor(hr[None])
            figures["lpips"] = float(self.lpips(self._tensor(sr[None]), target)[0])
            figures["bicubic_lpips"] = float(self.lpips(self._tensor(bicubic[None]), target)[0])
        if self.inception is not None:
            for column, image in (("sr", sr), ("bicubic", bicubic), ("hr", hr)):
                cut = patches(image, self.patch)
                for start in range(0, len(cut), self.batch_size):
                    pool3, logits = self.inception(self._tensor(cut[start : start + self.batch_size]))
                    self.gaussians[column].add(pool3.double().cpu().numpy())
                    self.logits[column].append(logits.double().cpu().numpy())
        return figures

    def finish(self):
        """{"patches", "patch", and per selected metric: fid, bicubic_fid / is, is_std, bicubic_is, ..., hr_is}."""
        if self.inception is None:
            return {}
        count = self.gaussians["hr"].count
        result = {"patches": count, "patch": self.patch}
        if "fid" in self.metrics:
            reference = self.gaussians["hr"].stats()
            result["fid"] = frechet_distance(*self.gaussians["sr"].stats(), *reference)
            result["bicubic_fid"] = frechet_distance(*self.gaussians["bicubic"].stats(), *reference)
        if "is" in self.metrics:
            if count < 2:
                raise UserError(f"IS needs at least 2 patches, got {count}: use a smaller --fid-patch")
            for column, prefix in (("sr", ""), ("bicubic", "bicubic_"), ("hr", "hr_")):
                result[f"{prefix}is"], result[f"{prefix}is_std"] = inception_score(np.concatenate(self.logits[column]))
        self._reset()
        return result


def make_scorer(metrics, *, device="cpu", weights_dir=None, patch=DEFAULT_PATCH):
    """A PerceptualScorer when `metrics` asks for LPIPS, FID or IS (its weights found now); None for PSNR/SSIM."""
    if not set(WEIGHTS_FOR) & set(metrics):
        return None
    return PerceptualScorer(metrics, device=device, weights_dir=weights_dir, patch=patch)


def format_set_metrics(figures):
    """The lines under the evaluation table for FID/IS (empty when neither was asked for)."""
    if not figures:
        return []
    count, patch = figures["patches"], figures["patch"]
    lines = [f"set metrics over {count} patches of {patch}x{patch} HR px (model / bicubic / HR)"]
    if count < FEATURE_DIM:
        lines.append(
            f"  note: fewer patches than the {FEATURE_DIM} Inception features: FID is biased upwards and "
            "only ranks the columns of this table; it is not comparable to published FIDs (docs/metrics.md)"
        )
    if "fid" in figures:
        lines.append(f"  FID (lower is closer to HR)     {figures['fid']:10.4f} / {figures['bicubic_fid']:10.4f} / 0")
    if "is" in figures:
        scores = [f"{figures[f'{p}is']:.4f} +- {figures[f'{p}is_std']:.4f}" for p in ("", "bicubic_", "hr_")]
        lines.append("  IS (higher: more confident classes, not more faithful) " + " / ".join(scores))
    return lines
