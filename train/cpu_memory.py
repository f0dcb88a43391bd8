"""Training on a CPU: keep freed tensor memory in the process instead of handing it back to the system.

PyTorch's CPU allocator asks the C library for every tensor and frees it straight away (no caching, unlike CUDA).
glibc serves blocks above its mmap threshold (128 KiB, rising to at most 32 MiB as it adapts) with a fresh
`mmap` and returns them with `munmap`, so each large activation of every step is paged in again: the kernel
zeroes each 4 KiB page on first touch. A PAN x4 training step (batch 8 x 4, LR 64) makes about 2.4 million such
page faults. With the threshold raised, freed blocks stay in the heap and are reused untouched. Measured on the
2-core machine of docs/performance.md's figures, fp32 eager (python bench/train_speed.py): about 2.5 -> 3.2 samples/s,
system time 24 s -> 8 s over 4 steps. The cost is a higher resident size between steps (freed memory is kept).
"""

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers, from glibc's <malloc.h>
LARGEST_THRESHOLD = 2**31 - 1  # mallopt takes a C int


def keep_freed_memory():
    """Raise glibc's mmap threshold for this process. Returns whether it was set: False off glibc (macOS,
    musl), or when the user chose a threshold with MALLOC_MMAP_THRESHOLD_ (theirs is left alone)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_THRESHOLD))
