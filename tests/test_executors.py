"""The executor seam without a cluster: the local executor is a plain call, names are checked with a suggestion,
a Ray address nothing listens on fails at once with the fix, and the event file is read by whole lines only (the
Ray cluster itself: tests/test_ray_executor.py, slow)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from factory import executors
from factory.errors import ConfigError, NotFoundError
from factory.executors import ray_cluster


def test_the_local_executor_is_a_plain_call_with_its_callbacks(monkeypatch: pytest.MonkeyPatch):
    lines = []

    def job(*, ref: str, kind: str = "auto", log=None) -> dict:
        log(f"working on {ref}")
        return {"ref": ref, "kind": kind, "thread": threading.get_ident()}

    monkeypatch.delenv(executors.ENV, raising=False)
    out = executors.call("index", job, ref="m:v1", kind="hnsw", log=lines.append)  # `kind`: the function's own
    assert out == {"ref": "m:v1", "kind": "hnsw", "thread": threading.get_ident()} and lines == ["working on m:v1"]
    monkeypatch.setenv(executors.ENV, "rya")
    with pytest.raises(NotFoundError, match="Unknown executor 'rya'. Did you mean 'ray'?"):
        executors.call("export", job, ref="m:v1")


def test_a_ray_address_nothing_listens_on_fails_at_once_with_the_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ConfigError, match=f"Cannot reach the Ray cluster at 127.0.0.1:{port}") as err:
        ray_cluster._reachable(f"127.0.0.1:{port}")
    assert "ray start --head" in err.value.fix and "EDGEFACTORY_RAY_ADDRESS" in err.value.fix


def test_the_event_file_is_followed_by_whole_lines(tmp_path: Path):
    path, seen = tmp_path / "events.jsonl", []
    follower = ray_cluster._Follower(path, 0, seen.append)
    follower.read()  # no file yet: nothing
    path.write_text(json.dumps({"type": "epoch", "epoch": 1}) + "\n" + '{"type": "ep')
    follower.read()
    assert seen == [{"type": "epoch", "epoch": 1}]  # the half-written line waits
    with open(path, "a") as fh:
        fh.write('och", "epoch": 2}\n{"half a line a killed worker left\n' + json.dumps({"type": "resumed"}) + "\n")
    follower.read()
    assert seen == [{"type": "epoch", "epoch": 1}, {"type": "epoch", "epoch": 2}, {"type": "resumed"}]


def test_a_run_its_executor_lost_is_left_interrupted(tmp_path: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A Ray job whose worker died for good (or that was cancelled) leaves its run behind as `running`, with the PID
    of a process on a machine this one cannot judge: the caller marks it interrupted, so `--resume` takes it."""
    from factory import api
    from factory.catalog import Catalog
    from factory.executors.ray_cluster import JobFailed
    from factory.training import run as runs

    home = tmp_path / "ws"
    api.import_dataset(shapes_dir, "shapes", home=home)

    def lost(spec, on_event, stop, name=None):
        catalog = Catalog(home / "catalog.sqlite")
        catalog.update_run(spec.job_id, status="running", pid=4_000_000, host="gpu-node-7")  # what the worker left
        catalog.close()
        raise JobFailed("The Ray worker running train job died 4 times.", fix="...")

    monkeypatch.setattr(executors, "run", lost)
    with pytest.raises(JobFailed):
        api.train({"dataset": "shapes", "model": "tiny_cls", "epochs": 1}, home=home, executor="ray")
    (row,) = api.list_runs(home=home)
    assert row["status"] == "interrupted"
    assert runs.job(row["run"], str(home), {"device": "auto", "devices": 2}).gpus is None  # one where the cluster has
