"""Hand the heap pages freed after decoding a large image back to the operating system.

Measured (issue 20): one 6000x6000 16-bit PNG raised the server's RSS from 500 to 663 MB for good.
It is the allocator, not a cache: the same decode in a bare process on two threads took RSS from 31
to 202 MB, and ``malloc_trim(0)`` brought it back to 31 MB. Pillow holds a decoded image in blocks
of 16 MiB; once glibc has freed one large mmap'ed buffer its dynamic mmap threshold rises to 32 MiB,
so later 16 MiB blocks come from the per-thread malloc arenas of the I/O threads, which keep the
pages after ``free``. (``MALLOC_ARENA_MAX=1`` avoids it too, by funnelling every allocation of every
thread through one arena and its lock.)

So after a request whose images declare at least :data:`TRIM_ABOVE_PIXELS` pixels, the decoding
thread calls ``malloc_trim(0)``: 10-30 ms after such an image (which took about a second to
decode), 0.1 ms after a small one. Elsewhere than glibc (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_ABOVE_PIXELS = 4_000_000  # e.g. 2000x2000: smaller decodes reuse the arenas' free pages


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        log.debug("malloc_trim is not available here: freed heap pages stay with the allocator")
        return None


def release_free_heap() -> bool:
    """``malloc_trim(0)``: give the free pages of every malloc arena back; True if anything was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
