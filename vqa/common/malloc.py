"""Process setup for the entry points: keep freed memory in the process (glibc only).

A training or extraction step on CPU allocates and frees tens of MB of activations; by default glibc hands the top
of the heap back to the OS once 64 MB are free there, so the next step page-faults it all in again. ``make bench``
measured ~15 % of CPU training time spent that way. With ``tune_malloc`` RSS stays at its high-water mark instead
of shrinking between steps. ``cli.run`` calls it before a stage starts.
"""

import ctypes
import os
import sys


def tune_malloc() -> bool:
    """glibc ``mallopt``: blocks up to 32 MiB from the heap, trim only above 1 GiB; False where not glibc."""
    if not sys.platform.startswith("linux") or os.environ.get("VQA_DEFAULT_MALLOC"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: leave the allocator alone
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    # the mmap threshold first: setting the trim threshold freezes glibc's dynamic mmap threshold at 128 KiB
    return bool(mallopt(m_mmap_threshold, 32 * 2**20) and mallopt(m_trim_threshold, 2**30)
                and mallopt(m_top_pad, 64 * 2**20))  # fmt: skip

