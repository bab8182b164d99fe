"""Memory the server gives back after a burst. glibc keeps what large requests freed (a 12 MP photo decodes to
36 MB, then resized copies) in its heaps and per-thread arenas, so a burst of photos left the server ~1.2 GB
bigger for good (881 MB -> 2,070 MB after 5,000 mixed requests). The heaps are trimmed every few seconds (free
pages go back to the system; what is in use stays), which brought it back to its start. (Mapping every block of
1 MiB or more on its own did too, but cost a fifth of the throughput in page faults.) Elsewhere (macOS, musl)
nothing changes."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

TRIM_EVERY_S = 5.0


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def trim() -> bool:
    """Give the heaps' free pages back to the system; True when some were."""
    return bool(_LIBC and _LIBC.malloc_trim(0))
