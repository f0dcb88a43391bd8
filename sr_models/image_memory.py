"""Memory a command will need for an image, estimated before it is allocated (issue 19, rule 4: images).

Plain Python (no PyTorch): `export/upscale.py` uses it. The limit is the smaller of `--max-memory` (upscale and
evaluate, default DEFAULT_MAX_MEMORY) and what the machine has available (`MemAvailable` in /proc/meminfo, where
there is one).
"""

DEFAULT_MAX_MEMORY = 4 * 2**30

# Model activations per output pixel, float32, at inference: PAN x4 peaks at ~0.85 GB for a 1024x1024 output tile,
# SRResNet x4 at ~1.1 GB (export/runtime.py, docs/export.md): about 1,100 bytes per output pixel, an upper bound.
ACTIVATION_BYTES_PER_OUTPUT_PIXEL = 1100


def available_memory():
    """MemAvailable in bytes, or None where the system does not say (not Linux)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def gib(count):
    return f"{count / 2**30:,.1f} GiB" if count >= 2**30 / 10 else f"{count / 2**20:,.1f} MiB"


def parse_memory(text):
    """--max-memory: "8G", "512M", "2.5GiB" or a number of bytes -> bytes (ValueError otherwise)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in units else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise ValueError(f"--max-memory {text!r}: not a size (e.g. 8G, 512M)") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"--max-memory {text!r}: must be a positive size")
    return int(number * units[unit])


def memory_limit(max_memory=None):
    """(bytes, how to say it): the smaller of max_memory and MemAvailable. None: MemAvailable alone (training and
    prepare have no --max-memory; their decoding is bounded by the machine), unbounded where it is unknown."""
    available = available_memory()
    if max_memory is None:
        if available is None:
            return float("inf"), "no known limit"
        return available, f"this machine's available memory, {gib(available)} (MemAvailable)"
    said = f"--max-memory {gib(max_memory)}" + (" (the default)" if max_memory == DEFAULT_MAX_MEMORY else "")
    if available is not None and available < max_memory:
        return available, f"this machine's available memory, {gib(available)} (MemAvailable)"
    return max_memory, said


def check_fits(need, *, name, what, max_memory=None, change):
    """ValueError-compatible ImageError, one line with the size and the option to change, when `need` bytes
    exceed the limit; called before anything of that size is allocated."""
    from sr_models.images import ImageError  # images imports this module

    limit, said = memory_limit(max_memory)
    if need > limit:
        raise ImageError(f"{name}: {what} needs about {gib(need)}, more than {said}; {change}")
