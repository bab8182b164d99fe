"""Which process a record names: its PID and its start time, so a PID the system gave to another process
after the first died, or a zombie nobody reaped, is not taken for the process that wrote the record."""

from __future__ import annotations

import os
import socket

import psutil

SAME_START_S = 1.0  # start times are stored rounded; two processes of one PID start further apart than this
HOST = socket.gethostname()  # a PID names a process on this machine only (a shared catalog holds other machines')


def started(pid: int | None = None) -> float | None:
    """When process `pid` (default: this one) started, in seconds since the epoch; None when it is gone or a
    zombie."""
    try:
        process = psutil.Process(pid or os.getpid())
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(process.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # another user's live process
        return 0.0


def alive(pid: int | None, start: float | None = None) -> bool:
    """Whether process `pid` still runs and, when `start` is known, is the one that started then."""
    if not pid:
        return False
    now = started(pid)
    if now is None:
        return False
    return start is None or now == 0.0 or abs(now - start) < SAME_START_S


def gone(pid: int | None, start: float | None, host: str | None) -> bool:
    """Whether a record's process is known to have ended: it ran on this machine (records from before machines were
    noted did) and is not alive. Another machine's is that machine's to judge."""
    return host in (None, HOST) and not alive(pid, start)
