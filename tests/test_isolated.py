"""Native work in a child process: log lines arrive as they happen, errors come back as themselves, and a
child killed by a signal becomes one clear ExportError that leaves the workspace as it was."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from factory.errors import BudgetError, ExportError
from factory.isolated import run_isolated
from targets import api
from tests.conftest import copy_home


def segfaults(log) -> None:
    log("about to crash")
    ctypes.string_at(0)  # a real SIGSEGV, as a broken converter would raise


def refuses(n: int, log) -> None:
    log(f"checking {n}")
    raise BudgetError("over budget", fix="raise --max-drop", code="INT8_NOT_FASTER", details={"tried": [n]})


def breaks(log) -> None:
    raise RuntimeError("a converter's own exception")


def exits(log) -> None:
    log("leaving")
    os._exit(3)  # as a library that ends the process itself would


def answers(n: int, log) -> dict:
    log("working")
    return {"pid": os.getpid(), "n": n * 2}


def test_a_child_returns_its_result_and_streams_its_log():
    lines: list[str] = []
    out = run_isolated(answers, {"n": 21}, what="test job", log=lines.append)
    assert out["n"] == 42 and out["pid"] != os.getpid() and lines == ["working"]


def test_a_factory_error_comes_back_with_its_kind_fix_code_and_details():
    lines: list[str] = []
    with pytest.raises(BudgetError) as info:
        run_isolated(refuses, {"n": 3}, what="test job", log=lines.append)
    err = info.value
    assert (err.message, err.fix, err.code, err.details) == ("over budget", "raise --max-drop", "INT8_NOT_FASTER", {"tried": [3]})
    assert lines == ["checking 3"]


def test_any_other_exception_becomes_an_export_error_with_its_traceback():
    with pytest.raises(ExportError, match="RuntimeError: a converter's own exception") as info:
        run_isolated(breaks, {}, what="test job")
    assert "def breaks" not in info.value.message and "breaks" in info.value.details["traceback"]


def test_a_segfaulting_child_is_named_and_cleaned_up_after():
    lines, crashed = [], []
    with pytest.raises(ExportError, match="test job was killed by SIGSEGV") as info:
        run_isolated(segfaults, {}, what="test job", log=lines.append, on_crash=crashed.append)
    assert info.value.code == "NATIVE_CRASH" and "Run it again" in info.value.fix
    assert lines == ["about to crash"] and crashed == [info.value.details["pid"]]


def test_a_child_that_exits_without_answering_is_not_called_a_crash():
    with pytest.raises(ExportError, match="test job exited with code 3 without a result") as info:
        run_isolated(exits, {}, what="test job")
    assert info.value.code == "CHILD_FAILED" and "__main__" in info.value.fix


def test_an_export_survives_one_crash_of_its_child(trained_home: Path, tmp_path: Path):
    home = tmp_path / "ws"
    copy_home(trained_home, home)
    killed: list[int] = []

    def kill_the_first_child(line: str) -> None:
        if line.startswith("reference") and not killed:
            for child in multiprocessing.active_children():
                killed.append(child.pid)
                os.kill(child.pid, signal.SIGSEGV)

    out = api.export("shapes-tiny:v1", "onnxruntime", precision="fp32", home=home, log=kill_the_first_child)
    assert killed and out["parity"]["passed"] and Path(out["path"], "model.onnx").is_file()
    assert not list((home / "artifacts").rglob(".tmp-*"))


def _artifact_tree(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in (home / "artifacts").rglob("*")) if (home / "artifacts").exists() else []


def test_an_export_whose_converter_dies_leaves_the_workspace_as_it_was(trained_home: Path):
    """The export's child is killed by SIGSEGV mid-way (after its first attempt wrote a staging folder), and so
    is the fresh child it is retried in: the caller gets NATIVE_CRASH, no staging folder is left and the
    catalog has no new artifact."""
    before = (_artifact_tree(trained_home), api.list_artifacts(home=trained_home))
    lines: list[str] = []

    def kill_child_after_the_attempt(line: str) -> None:
        lines.append(line)
        if line.startswith("export"):
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGSEGV)

    with pytest.raises(ExportError, match="onnxruntime int8 export of shapes-tiny:v1 was killed by SIGSEGV") as info:
        api.export("shapes-tiny:v1", "onnxruntime", precision="int8", keep_if_slower=True, calibration_size=30,
                   home=trained_home, log=kill_child_after_the_attempt)
    assert info.value.code == "NATIVE_CRASH"
    assert sum(line.startswith("reference") for line in lines) == 2  # the retry started from scratch
    assert any("killed by SIGSEGV" in line and "Trying once more" in line for line in lines)
    assert (_artifact_tree(trained_home), api.list_artifacts(home=trained_home)) == before
