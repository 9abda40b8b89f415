"""glibc heap settings of a training process.

By default glibc returns the free memory at the top of the heap to the system as soon as it
exceeds twice the largest block recently freed (``M_TRIM_THRESHOLD``, adjusted dynamically). A
training step allocates and frees its activations every time (about 20 MB for a 3 x 200 SBN at
iw = 50), so each step gives that memory back and page-faults it in again: ~5,000 page faults
and ~15% of the step time. Fixed thresholds keep up to ``trim_threshold`` bytes of freed memory
for the next step; the peak resident memory, which the evaluations set, is unchanged.
"""
import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's own ceiling of the dynamic mmap threshold (on 64-bit systems): blocks this large or
# larger are still mapped and returned one by one.
MMAP_THRESHOLD = 32 * 2 ** 20
TRIM_THRESHOLD = 64 * 2 ** 20


def retain_freed_memory(trim_threshold: int = TRIM_THRESHOLD, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Set glibc's trim and mmap thresholds; returns False (and changes nothing) on systems
    without glibc's ``mallopt``. Setting either threshold turns off their dynamic adjustment,
    hence both are set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
