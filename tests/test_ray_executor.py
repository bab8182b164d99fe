"""`--executor ray` on a real Ray cluster on loopback (`ray start --head`, 2 CPUs): training and an export submitted
through the CLI show their progress as local jobs do and land in the catalog; a worker killed mid-training is run
again by Ray and the run resumes from its last checkpoint with no epoch repeated; Ctrl-C stops a job with its
checkpoint kept; the REST /events stream shows a Ray job; `--devices 2` runs on two Ray Train workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from factory import api
from factory.catalog import Catalog
from tests.conftest import REPO, run_cli
from tests.serving_helpers import free_port
from tests.test_serve_workers import sse

pytestmark = pytest.mark.slow
RAY = Path(sys.executable).parent / "ray"
SLOW_TRAINING = ["--model", "mobilenet_v3_small", "--img-size", "160", "--pretrained", "none"]  # ~2 s an epoch here


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A head node with 2 CPUs on a loopback port; EDGEFACTORY_RAY_ADDRESS names it for this module's commands."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-ef-"))  # short: Ray's socket paths live under it
    started = subprocess.run([str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                              "--num-cpus=2", "--object-store-memory=100000000", "--include-dashboard=false",
                              "--disable-usage-stats", f"--temp-dir={temp}"], capture_output=True, text=True,
                             timeout=180, cwd=REPO)
    assert started.returncode == 0, started.stdout + started.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEFACTORY_RAY_ADDRESS", f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_home(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory, shapes_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("ray") / "ws"
    api.import_dataset(shapes_dir, "shapes", home=home)
    return home


def cli(*args: str, home: Path) -> subprocess.Popen:
    """`edgefactory ARGS` as a user types it (progress on stderr), in the background."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEFACTORY_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "factory.cli", *args], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def the_run(home: Path, name: str, epoch: int = 0, timeout: float = 300) -> dict:
    """The run training model `name`, once its progress reached `epoch`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        catalog = Catalog(home / "catalog.sqlite")
        try:
            runs = [r for r in catalog.runs() if r["config"].get("name") == name]
        finally:
            catalog.close()
        if runs and (not epoch or (runs[-1]["progress"].get("type") == "epoch" and runs[-1]["progress"]["epoch"] >= epoch)):
            return runs[-1]
        time.sleep(0.2)
    raise AssertionError(f"no run of {name} reached epoch {epoch} in {timeout} s")


def test_a_training_and_an_export_run_on_ray_as_local_jobs_do(ray_home: Path, ray_cluster: str):
    proc = cli("train", "--dataset", "shapes", "--model", "tiny_cls", "--epochs", "3", "--name", "on-ray",
               "--executor", "ray", home=ray_home)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "submitted to the Ray cluster at 127.0.0.1" in err and "registered on-ray:v1" in err  # the bar's own lines
    assert "epoch=3" in err and out.startswith("model on-ray:v1")
    run = the_run(ray_home, "on-ray")
    assert run["status"] == "completed" and run["result"]["version"] == 1 and len(run["history"]) == 3
    assert run["pid"] != proc.pid  # a Ray worker ran it
    events = [json.loads(line) for line in (ray_home / "runs" / run["id"] / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3]
    _, exported, err = run_cli("export", "on-ray:v1", "--target", "onnxruntime", "--executor", "ray", home=ray_home)
    assert exported["artifact"] == "on-ray:v1/onnxruntime/fp32" and Path(exported["path"]).is_dir()
    assert exported["accuracy"] == exported["reference_accuracy"]
    code, _, err = run_cli("export", "on-ray:v1", "--target", "nosuch", "--executor", "ray", home=ray_home, check=False)
    assert code == 1 and "Unknown target 'nosuch'" in err  # the job's own error, with its fix, not Ray's wrapper


def test_a_killed_worker_is_run_again_and_training_resumes_from_its_checkpoint(ray_home: Path):
    proc = cli("train", "--dataset", "shapes", *SLOW_TRAINING, "--epochs", "6", "--name", "killed", "--executor", "ray",
               home=ray_home)
    run = the_run(ray_home, "killed", epoch=2)
    os.kill(run["pid"], signal.SIGKILL)  # the Ray worker training it
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Ray runs it again" in err and "from its last checkpoint" in err
    folder = ray_home / "runs" / run["id"]
    events = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    resumed = [e for e in events if e["type"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["epoch"] >= 2
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4, 5, 6]  # none repeated, none lost
    assert len((folder / "executor" / "attempts").read_text().splitlines()) == 2
    metadata = json.loads((ray_home / "models" / "killed" / "v1" / "metadata.json").read_text())
    assert [h["epoch"] for h in metadata["history"]] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_stops_a_ray_job_and_resume_goes_on_from_its_checkpoint(ray_home: Path):
    proc = cli("train", "--dataset", "shapes", *SLOW_TRAINING, "--epochs", "5", "--name", "stopped", "--executor",
               "ray", home=ray_home)
    run = the_run(ray_home, "stopped", epoch=1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "--resume" in err
    stopped = the_run(ray_home, "stopped")
    assert stopped["status"] == "stopped" and 1 <= len(stopped["history"]) < 5
    _, out, err = run_cli("train", "--resume", run["id"], "--executor", "ray", home=ray_home, timeout=600)
    assert out["run"] == run["id"] and out["metrics"]["epochs_run"] == 5
    assert "runs it again" not in err  # a resume is a new submission, not a retry
    events = [json.loads(line) for line in (ray_home / "runs" / run["id"] / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4, 5]


def test_the_rest_events_stream_shows_a_ray_job(ray_home: Path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEFACTORY_HOME": str(ray_home), "EDGEFACTORY_EXECUTOR": "ray"}
    server = subprocess.Popen([sys.executable, "-m", "factory.cli", "serve", "--port", str(port), "--phone-port", "0"],
                              env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.5)
        job = httpx.post(f"{url}/v1/jobs", json={"kind": "train", "params": {
            "dataset": "shapes", "model": "tiny_cls", "epochs": 3, "name": "rest-ray"}}, timeout=60).json()
        events, end = sse(f"{url}/v1/jobs/{job['id']}/events", {})
        assert end["status"] == "completed", (end, events[-3:])
        kinds = [e["type"] for e in events]
        assert "executor" in kinds and kinds.count("epoch") == 3 and "registered" in kinds
        assert the_run(ray_home, "rest-ray")["pid"] != server.pid
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


def test_devices_2_trains_on_two_ray_train_workers(ray_home: Path):
    _, out, _ = run_cli("train", "--dataset", "shapes", "--model", "tiny_cls", "--epochs", "2", "--devices", "2",
                        "--name", "ray-ddp", "--executor", "ray", home=ray_home, timeout=600)
    _, alone, _ = run_cli("train", "--dataset", "shapes", "--model", "tiny_cls", "--epochs", "2", "--name", "one",
                          home=ray_home)
    events = [json.loads(line) for line in (ray_home / "runs" / out["run"] / "log.jsonl").read_text().splitlines()]
    stage = [e for e in events if e["type"] == "stage" and e["stage"] == "data parallel"]
    assert stage and stage[0]["processes"] == 2 and stage[0]["backend"] == "gloo"
    one = [json.loads(line) for line in (ray_home / "runs" / alone["run"] / "log.jsonl").read_text().splitlines()]
    assert [e["samples"] for e in events if e["type"] == "epoch"] == [e["samples"] for e in one if e["type"] == "epoch"]
    assert (ray_home / "runs" / out["run"] / "executor" / "result.json").is_file()  # rank 0's, read by the job


def test_ctrl_c_stops_a_ray_train_job_at_once_and_its_own_error_is_not_retried(ray_home: Path):
    """Ray Train retries a worker group that failed; a Stop (and a job's own error) must end the job as itself."""
    proc = cli("train", "--dataset", "shapes", *SLOW_TRAINING, "--epochs", "6", "--devices", "2", "--name", "ddp-stop",
               "--executor", "ray", home=ray_home)
    run = the_run(ray_home, "ddp-stop", epoch=1, timeout=600)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert the_run(ray_home, "ddp-stop")["status"] == "stopped"
    folder = ray_home / "runs" / run["id"] / "executor"
    assert len((folder / "attempts").read_text().splitlines()) == 1 and "runs it again" not in err
