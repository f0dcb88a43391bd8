"""The mixed precision of a run, chosen by what the device computes natively (`mixed_precision: auto`).

    auto on CUDA  bf16 where the GPU computes it (Ampere and newer), else fp16 (Accelerate scales the loss)
    auto on CPU   bf16 only where the CPU computes it natively and torch's kernels use that: AMX or AVX512-BF16,
                  torch's CPU kernels at AVX512, oneDNN's bf16 kernels available; else no (fp32)
    no | fp16 | bf16   as asked; bf16 on a CPU that would emulate it runs, with one warning line

Without native bf16, CPU autocast emulates it and a step is several times slower than fp32 (docs/performance.md).

A launch config's (or `accelerate launch --mixed_precision`'s) fp16 or bf16 wins over auto: it reaches us as
ACCELERATE_MIXED_PRECISION. Its `no` does not: `accelerate launch` sets `no` by itself whenever nothing was said,
so `no` there cannot be told from silence; pass `--mixed-precision no` to train in fp32 whatever the device.

The checks are torch's own; each is read through `cpu_features()` so that tests can stub it. ATEN_CPU_CAPABILITY
(torch's kernels capped below AVX512) and ONEDNN_MAX_CPU_ISA (oneDNN capped) count: with either cap, torch's
kernels emulate bf16 even on an AMX CPU, and auto picks fp32.
"""

import os
from dataclasses import dataclass

import torch

# What Accelerate reads when the Accelerator is given no mixed_precision; `accelerate launch` always sets it.
LAUNCH_ENV = "ACCELERATE_MIXED_PRECISION"


@dataclass(frozen=True)
class Precision:
    mixed_precision: str  # what the Accelerator gets: no | fp16 | bf16 (or the launch config's own value)
    reason: str  # why, in a few words: shown in the start line and logged
    warning: str | None = None  # one line to print, or None


def cpu_features():
    """torch's view of this CPU: hardware bf16 units, and whether its kernels may use them. A check missing from
    this torch counts as absent (never a guess that the CPU is native)."""

    def check(function):
        try:
            return bool(function())
        except (AttributeError, RuntimeError):
            return False

    return {
        "amx": check(lambda: torch.cpu._is_amx_tile_supported()),
        "avx512_bf16": check(lambda: torch.cpu._is_avx512_bf16_supported()),
        "kernels": torch.backends.cpu.get_cpu_capability(),  # AVX512, AVX2, DEFAULT, ...: ATEN_CPU_CAPABILITY caps it
        # oneDNN's own report stays True under a cap such as AVX512_CORE (bf16 then emulated): the cap is read too.
        "onednn_bf16": check(lambda: torch.ops.mkldnn._is_mkldnn_bf16_supported()) and onednn_cap_admits_bf16(),
    }


# oneDNN ISAs (ONEDNN_MAX_CPU_ISA values) from which its kernels use bf16 instructions; below them bf16 is emulated.
ONEDNN_BF16_ISAS = (
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
    "ALL",
    "DEFAULT",
)


def onednn_cap_admits_bf16(environ=None):
    """Whether ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA), if set, lets oneDNN use bf16 instructions."""
    environ = os.environ if environ is None else environ
    cap = environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA")
    return not cap or cap.strip().upper() in ONEDNN_BF16_ISAS


def cpu_bf16(features):
    """(native, why) for bf16 on this CPU, from `cpu_features()`."""
    units = [name for name, key in (("AMX", "amx"), ("AVX512-BF16", "avx512_bf16")) if features[key]]
    if not units:
        return False, "no native bf16 on this CPU (no AMX, no AVX512-BF16)"
    if not features["kernels"].startswith("AVX512"):
        return False, (
            f"this CPU has {' and '.join(units)} but torch's CPU kernels are capped at "
            f"{features['kernels']} (ATEN_CPU_CAPABILITY)"
        )
    if not features["onednn_bf16"]:
        return False, f"this CPU has {' and '.join(units)} but oneDNN's bf16 kernels are off (ONEDNN_MAX_CPU_ISA)"
    return True, f"native bf16 on this CPU ({' and '.join(units)})"


def cuda_bf16():
    # including_emulation=False: a pre-Ampere GPU "supports" bf16 only by emulating it, much slower than fp16.
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument: its own answer
        return torch.cuda.is_bf16_supported()


def choose(requested, *, device_type, environ=None, features=None, cuda_has_bf16=None):
    """The Precision for `requested` (the config's mixed_precision) on a device of `device_type` ("cpu", "cuda",
    ...). `environ` defaults to os.environ; `features` and `cuda_has_bf16` to this machine's checks."""
    environ = os.environ if environ is None else environ
    launch = environ.get(LAUNCH_ENV, "").lower()
    cpu_native, cpu_why = None, None
    if device_type == "cpu":
        cpu_native, cpu_why = cpu_bf16(cpu_features() if features is None else features)
    if requested != "auto":
        choice, reason = requested, "set by --mixed-precision or the recipe"
    elif launch and launch != "no":
        choice, reason = launch, f"the launch config's ({LAUNCH_ENV}={launch})"
    elif device_type == "cuda":
        has_bf16 = cuda_bf16() if cuda_has_bf16 is None else cuda_has_bf16
        choice = "bf16" if has_bf16 else "fp16"
        reason = "auto: " + (
            "native bf16 on this GPU" if has_bf16 else "no native bf16 on this GPU; fp16 with loss scaling"
        )
    elif device_type == "cpu":
        choice, reason = ("bf16" if cpu_native else "no"), f"auto: {cpu_why}"
    else:
        choice, reason = "no", f"auto: fp32 on {device_type} (no rule for mixed precision there)"
    warning = None
    if choice == "bf16" and cpu_native is False:  # asked for (auto never picks emulated bf16): run, and say so
        warning = (
            f"warning: bf16 is emulated here, a step several times slower than in fp32: {cpu_why}; "
            f"mixed_precision auto would train in fp32"
        )
        reason += f"; emulated: {cpu_why}"
    return Precision(choice, reason, warning)
