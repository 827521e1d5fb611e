"""Give back the library pages the fork server touched while importing, without changing anything.

Importing torch (a CUDA build) faults in ~300 MB of shared-library pages. A forked worker does not
inherit those page mappings: it faults in only what it uses. So the idle fork server keeps them
resident for itself alone, and its memory looks 300 MB larger than it needs to be. MADV_PAGEOUT asks
the kernel to reclaim them from this process: clean file pages leave its page tables (they stay in the
page cache, a minor fault away), and anything dirty stays where it is, since there is no data loss in a
reclaim hint. Only read-only file mappings are touched. Linux 5.4 and later; a no-op elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["page_out_libraries"]

_MADV_PAGEOUT = 21


def page_out_libraries() -> int:
    """Ask the kernel to reclaim this process's read-only file-backed pages; returns bytes advised."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    advised = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith("/") or "w" in fields[1]:
                continue
            start, end = (int(part, 16) for part in fields[0].split("-"))
            if libc.madvise(start, end - start, _MADV_PAGEOUT) == 0:
                advised += end - start
    return advised
