"""Keep this thread's signal stack where Python put it while native code that moves it runs.

OpenVINO's CPU plugin installs an alternate signal stack of its own (mmap'ed) on the thread that loads
it, and when the plugin is unloaded it puts back the stack it found there and unmaps its own. Every
`ov.Core` (ours, and one per NNCF inference engine) loads a plugin of its own, and compiled models keep
theirs alive until the garbage collector releases them: when two plugins are unloaded in another order
than they were loaded, the thread is left pointing at unmapped memory. The next Python signal handler
delivered to it (SIGCHLD after a child process exits, SIGINT, SIGTERM: CPython installs them all with
SA_ONSTACK) cannot be delivered, and the kernel kills the process with SIGSEGV, so fast that not even
faulthandler can say where.

`kept_signal_stack()` puts the caller's stack back after a call that may load a plugin; a plugin whose
stack is no longer current leaves the thread's stack alone when it is unloaded (it only unmaps its own),
so any load and unload order is then safe. Where the kernel refuses the old stack (the plugin exists to
make room for AMX signal frames; once AMX is enabled a stack too small for them is refused), the thread
gets a stack of this module's own, large enough and never unmapped. `signal_stack_problem()` says when a
thread's stack is unusable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

SS_ONSTACK, SS_DISABLE = 1, 2
OWN_STACK_BYTES = 256 * 1024  # far above any signal frame (AMX frames are about 11 KiB)


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith(("linux", "darwin")):
        return None  # no alternate signal stacks (Windows)
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


_LIBC = _libc()


def current() -> tuple[int, int, int] | None:
    """This thread's alternate signal stack as (address, size, flags), or None where there is none."""
    if _LIBC is None:
        return None
    stack = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack.ss_sp or 0, stack.ss_size, stack.ss_flags


def _install(address: int, size: int, flags: int) -> bool:
    stack = _StackT(ss_sp=address or None, ss_flags=flags & SS_DISABLE, ss_size=size)
    return _LIBC.sigaltstack(ctypes.byref(stack), None) == 0


_OWN_STACKS: dict[int, mmap.mmap] = {}  # native thread id -> its stack; never unmapped, a thread may be on it


def own_stack() -> tuple[int, int, int]:
    """This thread's stack of this module's own, made on first use: (address, size, flags)."""
    thread = threading.get_native_id()
    if thread not in _OWN_STACKS:
        _OWN_STACKS[thread] = mmap.mmap(-1, OWN_STACK_BYTES)
    return ctypes.addressof(ctypes.c_char.from_buffer(_OWN_STACKS[thread])), OWN_STACK_BYTES, 0


def is_kept(stack: tuple[int, int, int] | None, before: tuple[int, int, int] | None) -> bool:
    """Whether `stack` is what kept_signal_stack() leaves after starting from `before`."""
    return stack == before or (threading.get_native_id() in _OWN_STACKS and stack == own_stack())


@contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block, then give this thread back the alternate signal stack it had before the block."""
    before = current()
    try:
        yield
    finally:
        if before is not None and current() != before and not before[2] & SS_ONSTACK and not _install(*before):
            _install(*own_stack())  # the old stack was refused (too small once AMX is on)


def _mapped(address: int, size: int) -> bool:
    """Whether [address, address + size) lies in writable mappings of this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return True  # cannot tell (not Linux)
    regions = []
    for line in lines:
        span, perms = line.split()[:2]
        low, high = (int(x, 16) for x in span.split("-"))
        if "w" in perms:
            regions.append((low, high))
    end, point = address + size, address
    for low, high in sorted(regions):
        if low <= point < high:
            point = high
            if point >= end:
                return True
    return False


def signal_stack_problem() -> str | None:
    """None when this thread's alternate signal stack can take a signal; else what is wrong with it."""
    stack = current()
    if stack is None or stack[2] & SS_DISABLE:
        return None
    address, size, _ = stack
    if not _mapped(address, size):
        return (f"this thread's alternate signal stack ({size} bytes at {address:#x}) is not mapped: the next "
                "Python signal handler would kill the process with SIGSEGV")
    return None
