"""OpenVINO CPU plugins move the thread's signal stack and unmap theirs when unloaded: the factory keeps the
stack Python installed, so compiled models released in any order never leave a signal undeliverable."""

from __future__ import annotations

import ctypes
import resource
import subprocess
import sys
import textwrap

import pytest

from factory.signal_stack import _StackT, _LIBC, current, kept_signal_stack, signal_stack_problem
from tests.conftest import REPO


@pytest.mark.skipif(_LIBC is None, reason="no alternate signal stacks on this platform")
def test_kept_signal_stack_puts_back_what_a_native_call_installed():
    before = current()
    buffer = ctypes.create_string_buffer(64 * 1024)
    with kept_signal_stack():
        _LIBC.sigaltstack(ctypes.byref(_StackT(ss_sp=ctypes.addressof(buffer), ss_flags=0, ss_size=len(buffer))), None)
        assert current()[0] == ctypes.addressof(buffer)
    assert current() == before and signal_stack_problem() is None


def no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the unguarded child dies of SIGSEGV on purpose


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO,
                          timeout=300, preexec_fn=no_core_dump)


OPENVINO_RUNNERS = """
    import faulthandler, gc, os, signal
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops
    faulthandler.enable()  # a Python-installed signal stack, as pytest and `python -X faulthandler` have
    {setup}
    folder = "{folder}"
    x = ops.parameter([1, 3, 8, 8], np.float32)
    ov.save_model(ov.Model([ops.relu(x)], [x]), folder + "/model.xml")
    first, second = load(), load()
    del first; gc.collect()  # unloaded in the order they were loaded: not last in, first out
    del second; gc.collect()
    {check}
    signal.signal(signal.SIGUSR1, lambda *args: print("handled", flush=True))
    os.kill(os.getpid(), signal.SIGUSR1)
    print("alive", flush=True)
"""


@pytest.mark.skipif(_LIBC is None, reason="no alternate signal stacks on this platform")
def test_openvino_runners_released_in_any_order_leave_signals_deliverable(tmp_path):
    pytest.importorskip("openvino")
    ours = run_child(OPENVINO_RUNNERS.format(folder=tmp_path, setup=textwrap.dedent("""
        from pathlib import Path
        from factory.signal_stack import signal_stack_problem
        from targets.openvino import OpenVinoTarget
        load = lambda: OpenVinoTarget().load(Path(folder), {"precision": "fp32"})
    """).replace("\n", "\n    "), check="assert signal_stack_problem() is None, signal_stack_problem()"))
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.split() == ["handled", "alive"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_hazard_is_real_without_the_guard(tmp_path):
    """The same sequence on bare ov.Core objects kills the process with SIGSEGV (if a later OpenVINO stops
    moving the signal stack, this fails and the guard can go)."""
    pytest.importorskip("openvino")
    bare = run_child(OPENVINO_RUNNERS.format(folder=tmp_path, setup=textwrap.dedent("""
        load = lambda: ov.Core().compile_model(folder + "/model.xml", "CPU")
    """).replace("\n", "\n    "), check=""))
    assert bare.returncode == -11 and "alive" not in bare.stdout


@pytest.mark.skipif(_LIBC is None, reason="no alternate signal stacks on this platform")
def test_a_refused_old_stack_is_replaced_by_one_of_our_own(monkeypatch):
    """Once AMX is enabled the kernel refuses a stack too small for its signal frames: the thread then gets a
    stack of the factory's own instead of keeping the plugin's, which the plugin unmaps when unloaded."""
    from factory import signal_stack

    before = current()
    real = signal_stack._install
    monkeypatch.setattr(signal_stack, "_install", lambda *stack: stack != before and real(*stack))
    buffer = ctypes.create_string_buffer(64 * 1024)
    try:
        with kept_signal_stack():
            _LIBC.sigaltstack(ctypes.byref(_StackT(ss_sp=ctypes.addressof(buffer), ss_size=len(buffer))), None)
        ours = current()
        assert ours == signal_stack.own_stack() and ours[1] == signal_stack.OWN_STACK_BYTES
        assert signal_stack.is_kept(ours, before) and signal_stack_problem() is None
    finally:
        real(*before)  # the rest of the run keeps pytest's stack
