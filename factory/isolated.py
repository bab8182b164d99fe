"""Native converters and runtimes in a child process.

ONNX exporters, quantizers, ncnn, LiteRT and ExecuTorch run C++ that can die of a signal (SIGSEGV,
SIGABRT) instead of raising. In the caller's process that ends the server, the chat or the CLI with
whatever it was doing. Run such work here instead: the child is forked from multiprocessing's fork
server (a clean single-threaded process that has imported the work's module once, so a child starts in
milliseconds instead of re-importing PyTorch, and copies none of the caller's threads or OpenMP
pools), its log lines reach the caller as they happen, a FactoryError comes back as the same error,
and a child killed by a signal becomes one ExportError that names the signal.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from factory.errors import ExportError, FactoryError

Log = Callable[[str], None]


def own_environment() -> dict[str, str]:
    """The caller's EDGEFACTORY_* settings: a child forked from a fork server started earlier has the server's
    environment, so these travel with each call (a task plugin named since, a workspace)."""
    return {k: v for k, v in os.environ.items() if k.startswith("EDGEFACTORY_")}


def verbose() -> bool:
    """Whether third-party output reaches the terminal (`--verbose`, or EDGEFACTORY_VERBOSE=1)."""
    return os.environ.get("EDGEFACTORY_VERBOSE", "") not in ("", "0")


def output_log(home: str | Path, kind: str, ref: str, target: str, precision: str) -> Path:
    """Where a child process working on one artifact writes its libraries' own output (`capture_output`):
    logs/<kind>-<model>-v<N>-<target>-<precision>.log in the workspace, each run appended."""
    return Path(home) / "logs" / f"{kind}-{ref.replace(':', '-')}-{target}-{precision}.log"


def capture_output(path: Path) -> None:
    """This process's stdout and stderr, native libraries' included (converter logs, quantizers' progress bars,
    absl lines), appended to `path` instead of the terminal; left on the terminal when `verbose()`."""
    if verbose():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n".encode())
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _child(conn, fn: Callable[..., Any], kwargs: dict, environment: dict[str, str], output: Path | None) -> None:
    try:
        for key in [k for k in os.environ if k.startswith("EDGEFACTORY_") and k not in environment]:
            del os.environ[key]
        os.environ.update(environment)
        if output is not None:
            capture_output(output)
        result = fn(**kwargs, log=lambda line: conn.send(("log", line)))
        conn.send(("ok", result))
    except FactoryError as exc:
        conn.send(("error", exc))
    except BaseException as exc:  # anything else still reaches the caller, with its traceback
        conn.send(("error", ExportError(f"{type(exc).__name__}: {str(exc)[:500]}",
                                        fix="Report this as a bug with the log above.",
                                        details={"traceback": traceback.format_exc()[-4000:]})))
    finally:
        conn.close()


def signal_name(exitcode: int) -> str:
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def run_isolated(fn: Callable[..., Any], kwargs: dict, *, what: str, log: Log | None = None,
                 on_crash: Callable[[int], None] | None = None, preload: tuple[str, ...] = (),
                 output: Path | None = None) -> Any:
    """`fn(**kwargs, log=...)` in a child process; returns its (picklable) result.

    `fn` must be importable by name (a module-level function). `on_crash(child_pid)` runs after a child
    died without answering, to remove what it left half-done. `preload`: more modules for the fork server
    to import when it starts (what `fn` imports lazily; missing ones are skipped). `output`: a log file the
    child's own stdout and stderr go to (libraries' noise; `log` lines still reach the caller), unless verbose().
    Raises the child's FactoryError, or ExportError naming `what` and the signal when the child died.
    """
    log = log or (lambda line: None)
    ctx = multiprocessing.get_context("forkserver")
    # read when the fork server starts (the first call in this process); later calls fork from it as it is
    ctx.set_forkserver_preload(["torch", fn.__module__, *preload])
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, kwargs, own_environment(), output), name=f"edgefactory-{what}",
                       daemon=True)
    proc.start()
    child.close()  # the child holds the only write end now: EOF means it is gone
    try:
        while True:
            try:
                kind, payload = parent.recv()
            except EOFError:
                break
            if kind == "log":
                log(payload)
            elif kind == "ok":
                return payload
            else:
                raise payload
    finally:
        if proc.is_alive():
            proc.join(timeout=30)
        if proc.is_alive():  # the caller was interrupted: do not leave a converter running
            proc.kill()
            proc.join()
        parent.close()
    proc.join()
    if on_crash:
        on_crash(proc.pid)
    if proc.exitcode and proc.exitcode < 0:
        raise ExportError(f"The {what} was killed by {signal_name(proc.exitcode)} inside a native library; nothing "
                          "was written and the catalog is unchanged.",
                          fix="Run it again (such crashes are often one-off); if it repeats, try another precision or "
                              "target and report it as a bug with the log.",
                          code="NATIVE_CRASH", details={"exitcode": proc.exitcode, "pid": proc.pid,
                                                        "output": str(output) if output else None})
    raise ExportError(f"The {what} exited with code {proc.exitcode} without a result; nothing was written.",
                      fix="Called from a Python script? The child process imports your script again: put the calls "
                          "under `if __name__ == \"__main__\":`. Otherwise see "
                          + (f"its output in {output}." if output and not verbose() else "the error printed above."),
                      code="CHILD_FAILED", details={"exitcode": proc.exitcode, "pid": proc.pid})
