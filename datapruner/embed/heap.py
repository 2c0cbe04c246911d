"""Keeping the model's freed activations in the process while it embeds on the CPU (glibc malloc).

glibc hands big freed blocks back to the kernel: above its mmap threshold (128 KiB at first, raised as such
blocks are freed, to 32 MiB at most) they are unmapped, and a heap whose free top exceeds the trim
threshold is shrunk. A transformer's forward pass frees tens of MB of activations, so each batch faulted
them in again: 75,000–115,000 minor page faults per 64-image ViT-S-32 batch, up to a fifth of the model's
time on an EPYC core. With the threshold at its maximum and no trimming while embedding, the next batch
reuses the pages; afterwards the threshold stays where glibc's own rule would take it and the heap is
trimmed. Both are set because setting either stops glibc moving the other: trimming off alone left the
threshold at 128 KiB (~4× the faults).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from typing import Iterator

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 * 2 ** 20  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
NO_TRIM = 2 ** 31 - 1
TRIM_AFTER = 2 * MMAP_THRESHOLD_MAX  # what glibc's dynamic rule sets beside that threshold


@functools.cache
def _libc():
    """The process's C library when it is glibc (it has mallopt and malloc_trim), else None. Looked up once,
    among the symbols already loaded (find_library would run ldconfig on every embed call)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Yields whether the setting took (False where the C library is not glibc: nothing changes)."""
    libc = _libc()
    kept = bool(libc and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
                and libc.mallopt(M_TRIM_THRESHOLD, NO_TRIM))
    if kept:
        log.debug("malloc keeps freed blocks while the model embeds (no trimming, mmap above 32 MiB only)")
    else:
        log.debug("not glibc: the model's freed activations go back to the kernel between batches")
    try:
        yield kept
    finally:
        if kept:
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_AFTER)
            libc.malloc_trim(0)
