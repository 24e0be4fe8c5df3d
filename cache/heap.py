"""Keep freed memory in the process' heap: big per-iteration buffers reuse pages instead of faulting in new ones.

Used around registration (preprocess) and training (train): both allocate and free buffers of the same sizes
over and over, which glibc otherwise maps and unmaps each time (system time of a third of the run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

# glibc mallopt parameters (malloc.h); glibc's defaults to go back to afterwards
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536


def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (has mallopt and malloc_trim), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextmanager
def reused_heap() -> Iterator[None]:
    """Within the block, freed memory stays in the process' heap and serves the next allocation.

    glibc gives every block over a few MiB its own mmap and returns it on free, so each iteration's fresh
    warped image, force and spectra (hundreds of MiB at 1 mm) are page-faulted and zeroed by the kernel anew:
    at 1 mm that was a third of registration's CPU time (system time). Without mmap and trimming the blocks
    are reused; on leaving, glibc's defaults return and `malloc_trim` hands the free heap back. Other C
    libraries: no change.
    """
    libc = glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, -1)  # -1: never trim (mallopt(3))
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
