"""Imported first by every ``pipelines/*.py`` script: process setup before anything else is loaded.

1. Take the script's folder off the import path. ``pipelines/inspect.py`` shares its name with the standard
   library's ``inspect``, which torch and numpy import. Python puts a script's folder first on ``sys.path``, so
   without this every entry point in that folder would import our script instead of the standard module.
2. Keep freed memory in the process (glibc only; ``tune_malloc``). A training or extraction step on CPU allocates
   and frees tens of MB of activations; by default glibc hands the top of the heap back to the OS once 64 MB are
   free there, so the next step page-faults it all in again. ``make bench`` measured ~15 % of CPU training time
   spent that way. RSS then stays at its high-water mark instead of shrinking between steps.

This module imports nothing but the standard library.
"""

import ctypes
import os
import sys

_script_dir = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else None
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _script_dir]


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


MALLOC_TUNED = tune_malloc()
