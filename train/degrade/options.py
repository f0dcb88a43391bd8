"""The options of the degradation pipeline: every probability and range, with Real-ESRGAN's published defaults.

Defaults are those of Real-ESRGAN's x4 recipe (options/train_realesrnet_x4plus.yml, Wang et al. 2021). Fields
ending in `_2` are the second pass. A `DegradeOptions` is checked when built, directly or from a YAML mapping
(`from_mapping`); a bad value is one `DegradeOptionError` line naming the option and the problem.
"""

import math
from dataclasses import asdict, dataclass, fields

from sr_models.errors import UserError

KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
RESIZE_KINDS = ("up", "down", "keep")  # the order of resize_prob
MIN_KERNEL_SIZE = 7  # random kernel sizes are drawn from {7, 9, ..., blur_kernel_size}, as in Real-ESRGAN
# Bounds beyond any real degradation, which keep every draw computable: a kernel past 63 taps or a sigma past 100
# pixels is a flat average (and costs seconds a patch); a sigma below 0.01 is no blur, and its covariance is not
# invertible in floating point; an upscale past 8x only costs memory before the resize back.
MAX_KERNEL_SIZE = 63
SIGMA_BOUNDS = (0.01, 100.0)
MAX_RESIZE = 8.0
SECTION = "degradations"  # the key a recipe holds these options under: errors name `degradations.<option>`


class DegradeOptionError(UserError):
    """A bad degradation option; `option` and `problem` are kept so a caller can name the file it came from."""

    def __init__(self, option, problem, *, source="DegradeOptions"):
        self.option, self.problem = option, problem
        super().__init__(f"{source}: {option}: {problem}")


@dataclass(frozen=True, kw_only=True)
class Pass:
    """The options of one of the two degradation passes (blur, random resize, noise, JPEG)."""

    kernel_list: tuple
    kernel_prob: tuple
    sinc_prob: float
    blur_sigma: tuple
    betag_range: tuple
    betap_range: tuple
    resize_prob: tuple
    resize_range: tuple
    gaussian_noise_prob: float
    noise_range: tuple
    poisson_scale_range: tuple
    gray_noise_prob: float
    jpeg_range: tuple


@dataclass(frozen=True, kw_only=True)
class DegradeOptions:
    """Real-ESRGAN's second-order degradations (defaults: train_realesrnet_x4plus.yml).

    Args:
        kernel_list, kernel_prob: the blur kernel kinds of the first pass and the chance of each (sums to 1)
        blur_kernel_size: the largest (odd) kernel; each blur draws its size from {7, 9, ..., blur_kernel_size}
        sinc_prob: chance that the first blur is a 2-D sinc (ringing) instead of a kernel of kernel_list
        blur_sigma: range of the Gaussian widths (pixels); betag_range / betap_range: shape of the generalized
            Gaussian / plateau kernels
        second_blur_prob: chance of the second pass's blur; the `_2` fields are the second pass's
        final_sinc_prob: chance of the sinc filter that goes with the final resize
        resize_prob: chance of up, down, keep; resize_range: scale range (down draws low..1, up 1..high)
        gaussian_noise_prob: chance of Gaussian noise (else Poisson); noise_range: its sigma in 0..255 units;
            poisson_scale_range: the Poisson noise's scale; gray_noise_prob: chance the noise is the same on
            every channel
        jpeg_range: JPEG quality range (1..100, inclusive)
        resize_modes: the interpolations a resize draws from
        bicubic_share: share of the samples that keep the clean bicubic LR (given by the caller) instead
    """

    kernel_list: tuple = KERNEL_KINDS
    kernel_prob: tuple = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    blur_kernel_size: int = 21
    sinc_prob: float = 0.1
    blur_sigma: tuple = (0.2, 3.0)
    betag_range: tuple = (0.5, 4.0)
    betap_range: tuple = (1.0, 2.0)

    second_blur_prob: float = 0.8
    kernel_list_2: tuple = KERNEL_KINDS
    kernel_prob_2: tuple = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob_2: float = 0.1
    blur_sigma_2: tuple = (0.2, 1.5)
    betag_range_2: tuple = (0.5, 4.0)
    betap_range_2: tuple = (1.0, 2.0)

    final_sinc_prob: float = 0.8

    resize_prob: tuple = (0.2, 0.7, 0.1)
    resize_range: tuple = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple = (1.0, 30.0)
    poisson_scale_range: tuple = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple = (30, 95)

    resize_prob_2: tuple = (0.3, 0.4, 0.3)
    resize_range_2: tuple = (0.3, 1.2)
    gaussian_noise_prob_2: float = 0.5
    noise_range_2: tuple = (1.0, 25.0)
    poisson_scale_range_2: tuple = (0.05, 2.5)
    gray_noise_prob_2: float = 0.4
    jpeg_range_2: tuple = (30, 95)

    resize_modes: tuple = RESIZE_MODES
    bicubic_share: float = 0.0

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):  # YAML gives lists; tuples keep the options hashable and unchanged
                object.__setattr__(self, field.name, tuple(value))
        for name, check in CHECKS.items():
            problem = check(getattr(self, name), self)
            if problem:
                raise DegradeOptionError(name, problem)

    @classmethod
    def from_mapping(cls, mapping, *, source):
        """Options from a recipe's `degradations:` mapping; missing keys keep their default. `source` (a file
        name) starts every error line."""
        if not isinstance(mapping, dict):
            got = type(mapping).__name__
            raise DegradeOptionError(SECTION, f"expected a mapping of options, got {got}", source=source)
        valid = [field.name for field in fields(cls)]
        for key in mapping:
            if key not in valid:
                raise DegradeOptionError(
                    f"{SECTION}.{key}", f"unknown option (valid: {', '.join(valid)})", source=source
                )
        try:
            return cls(**mapping)
        except DegradeOptionError as error:
            raise DegradeOptionError(f"{SECTION}.{error.option}", error.problem, source=source) from None

    def as_dict(self):
        """Every option, lists for ranges: for a run's log and its saved config."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @property
    def first(self):
        return self._pass("")

    @property
    def second(self):
        return self._pass("_2")

    def _pass(self, suffix):
        return Pass(**{field.name: getattr(self, field.name + suffix) for field in fields(Pass)})


# ---- checks: each returns the problem (one line) or None ------------------------------------------------------


def _is_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    # an int is compared, never converted: float() of a 400-digit integer raises OverflowError
    return abs(value) < 10**300 if isinstance(value, int) else math.isfinite(value)


def _shown(value):
    """`value` as an error shows it, with a hint where YAML read a number as text (1e-3 without a dot)."""
    texts = [v for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, str)]
    for text in texts:
        try:
            float(text)
        except ValueError:
            continue
        return f"{value!r} (YAML reads {text} as text: write it with a dot and a signed exponent, e.g. 1.0e-3)"
    return repr(value)


def _probability(value, _options):
    if not _is_number(value):
        return f"expected a probability (a number in 0..1), got {_shown(value)}"
    if not 0 <= value <= 1:
        return f"probability {value} is outside 0..1"
    return None


def _probabilities(names):
    """A list of probabilities, one for each of `names(options)` (a label and a count), summing to 1."""

    def check(value, options):
        label, expected = names(options)
        if not isinstance(value, tuple) or not all(_is_number(p) for p in value):
            return f"expected a list of {expected} probabilities, got {_shown(value)}"
        if len(value) != expected:
            return f"expected {expected} probabilities (one for each of {label}), got {len(value)}"
        for p in value:
            if not 0 <= p <= 1:
                return f"probability {p} is outside 0..1"
        if abs(sum(value) - 1) > 1e-6:
            return f"probabilities sum to {sum(value):g}, not 1"
        return None

    return check


def _range(*, what, low=None, high=None, positive=False, integer=False):
    """A [low, high] pair of numbers (integers if `integer`), low <= high, each in low..high, > 0 if `positive`."""

    def check(value, _options):
        kind = "integers" if integer else "numbers"
        if (
            not isinstance(value, tuple)
            or len(value) != 2
            or not all(_is_number(v) and (isinstance(v, int) or not integer) for v in value)
        ):
            return f"expected a range [low, high] of two {kind}, got {_shown(value)}"
        for v in value:
            if positive and v <= 0:
                return f"{what} {v} must be > 0"
            if low is not None and high is not None and not low <= v <= high:
                return f"{what} {v} is outside {low}..{high}"
            if low is not None and v < low:
                return f"{what} {v} must be >= {low}"
        if value[0] > value[1]:
            return f"low {value[0]} is above high {value[1]}"
        return None

    return check


def _resize_range(value, options):
    problem = _range(what="scale", positive=True)(value, options)
    if problem is None and not value[0] <= 1 <= value[1]:
        return f"range {list(value)} must hold 1 (down draws from low..1, up from 1..high)"
    if problem is None and value[1] > MAX_RESIZE:
        return f"scale {value[1]} is above {MAX_RESIZE:g} (a larger upscale only costs memory before the resize back)"
    return problem


def _names(known, what):
    def check(value, _options):
        if not isinstance(value, tuple) or not value or not all(isinstance(v, str) for v in value):
            return f"expected a non-empty list of {what} names, got {value!r}"
        for v in value:
            if v not in known:
                return f"unknown {what} {v!r} (known: {', '.join(known)})"
        return None

    return check


def _kernel_size(value, _options):
    if not isinstance(value, int) or isinstance(value, bool):
        return f"expected an odd integer in {MIN_KERNEL_SIZE}..{MAX_KERNEL_SIZE}, got {_shown(value)}"
    if value % 2 == 0:
        return f"kernel size {value} is even (a kernel needs a centre pixel: use an odd size)"
    if value < MIN_KERNEL_SIZE:
        return f"kernel size {value} is below {MIN_KERNEL_SIZE} (sizes are drawn from {MIN_KERNEL_SIZE}..it)"
    if value > MAX_KERNEL_SIZE:
        return f"kernel size {value} is above {MAX_KERNEL_SIZE} (a wider kernel is a flat average, seconds a patch)"
    return None


_sigma = _range(what="sigma", low=SIGMA_BOUNDS[0], high=SIGMA_BOUNDS[1])
_beta = _range(what="beta", positive=True)
_noise = _range(what="noise", low=0)
_jpeg = _range(what="quality", low=1, high=100, integer=True)
_kernels = _probabilities(lambda options: ("kernel_list", len(options.kernel_list)))
_kernels_2 = _probabilities(lambda options: ("kernel_list_2", len(options.kernel_list_2)))
_resizes = _probabilities(lambda options: ("up, down, keep", len(RESIZE_KINDS)))

CHECKS = {
    "kernel_list": _names(KERNEL_KINDS, "kernel"),
    "kernel_prob": _kernels,
    "blur_kernel_size": _kernel_size,
    "sinc_prob": _probability,
    "blur_sigma": _sigma,
    "betag_range": _beta,
    "betap_range": _beta,
    "second_blur_prob": _probability,
    "kernel_list_2": _names(KERNEL_KINDS, "kernel"),
    "kernel_prob_2": _kernels_2,
    "sinc_prob_2": _probability,
    "blur_sigma_2": _sigma,
    "betag_range_2": _beta,
    "betap_range_2": _beta,
    "final_sinc_prob": _probability,
    "resize_prob": _resizes,
    "resize_range": _resize_range,
    "gaussian_noise_prob": _probability,
    "noise_range": _noise,
    "poisson_scale_range": _noise,
    "gray_noise_prob": _probability,
    "jpeg_range": _jpeg,
    "resize_prob_2": _resizes,
    "resize_range_2": _resize_range,
    "gaussian_noise_prob_2": _probability,
    "noise_range_2": _noise,
    "poisson_scale_range_2": _noise,
    "gray_noise_prob_2": _probability,
    "jpeg_range_2": _jpeg,
    "resize_modes": _names(RESIZE_MODES, "resize mode"),
    "bicubic_share": _probability,
}
