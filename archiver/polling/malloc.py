"""Hand large buffers back to the operating system as soon as they are freed (glibc only).

Why: a sync pass fetches on worker threads and archives on its own thread, and glibc gives each
thread its own malloc arena. A multi-megabyte payload read on a fetch thread leaves its freed
buffers in that thread's arena, because glibc raises its mmap threshold after the first large
free and serves later large blocks from the arena, which keeps them. Decoding and writing the
same payload then grows another arena: measured, one 11 MB payload cost 109 MB of resident set
instead of 71. A fixed threshold makes every block of 1 MiB or more its own mapping, returned on
free, whichever thread frees it; blocks that large are rare and cost one mmap each.

The setting is the whole process's, so the process that sets up for sync passes asks for it
(``archiver sync``, the daemon's start, the memory probes and benchmarks), not a ``SyncPass``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("archiver.malloc")
M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
THRESHOLD = 1 << 20


@functools.cache
def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold at 1 MiB (once per process); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; large buffers stay in their arenas")
    return done
