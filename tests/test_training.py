"""Training engine and registry: import -> train -> eval -> registry, resume after a kill,
incremental training, pretrained weights from the local cache, time budget, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from factory import api
from factory.errors import ConfigError, MissingDependencyError, NotFoundError
from factory.tasks.classification import MODELS, build_model, pretrained_path
from factory.training.engine import StopRequested, lr_factor

from tests.conftest import REPO, copy_home


def test_train_eval_registry_round_trip(trained_home: Path):
    models = api.list_models(home=trained_home)
    assert [m["ref"] for m in models] == ["shapes-tiny:v1"]
    meta = api.show_model("shapes-tiny", home=trained_home)
    assert meta["classes"] == ["circle", "square", "triangle"] and meta["input_size"] == [3, 32, 32]
    assert meta["preprocessing"]["mean"] and meta["dataset"] == "shapes:v1"
    # plain PyTorch weights: loadable without edgefactory's loader
    state = torch.load(Path(meta["path"]) / "weights.pt", weights_only=True)
    model = build_model("tiny_cls", 3)
    model.load_state_dict(state)
    result = api.evaluate("shapes-tiny:v1", split="test", home=trained_home)
    assert result["metrics"]["num_samples"] == 9
    assert result["metrics"]["accuracy"] == pytest.approx(meta["metrics"]["accuracy"])
    assert len(result["confusion_matrix"]["matrix"]) == 3
    for path in result["files"].values():
        assert Path(path).stat().st_size > 0
    run = api.run_status(meta["run"], home=trained_home)
    assert run["status"] == "completed" and len(run["history"]) == 15
    config = json.loads((trained_home / "runs" / meta["run"] / "config.json").read_text())
    assert config["img_size"] == 32 and config["model"] == "tiny_cls"


def test_unknown_model_and_version_suggest(trained_home: Path):
    with pytest.raises(NotFoundError, match="Did you mean 'shapes-tiny'"):
        api.show_model("shapes-tin", home=trained_home)
    with pytest.raises(NotFoundError, match="Existing versions: v1"):
        api.show_model("shapes-tiny:v9", home=trained_home)


def test_incremental_training_from_an_earlier_version(trained_home: Path):
    out = api.train({"dataset": "shapes", "from_model": "shapes-tiny:v1", "epochs": 1, "name": "shapes-tiny"},
                    home=trained_home)
    assert out["version"] == 2
    meta = api.show_model("shapes-tiny:v2", home=trained_home)
    assert meta["parent"] == "shapes-tiny:v1" and meta["arch"] == "tiny_cls"
    with pytest.raises(ConfigError, match="Leave out --model"):
        api.train({"dataset": "shapes", "from_model": "shapes-tiny:v1", "model": "resnet18", "epochs": 1},
                  home=trained_home)
    api.delete_model("shapes-tiny:v2", home=trained_home)
    assert [m["ref"] for m in api.list_models(home=trained_home)] == ["shapes-tiny:v1"]


def test_pretrained_weights_load_from_the_local_cache(trained_home: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingDependencyError, match="Copy the file resnet18-"):
        api.train({"dataset": "shapes", "model": "resnet18", "pretrained": "imagenet", "epochs": 1},
                  home=trained_home)
    # the test makes its own "ImageNet" file: a 1000-class resnet18 with recognisable weights
    imagenet = build_model("resnet18", 1000)
    with torch.no_grad():
        imagenet.conv1.weight.fill_(0.0123)
    path = pretrained_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), path)
    events: list[dict] = []
    out = api.train({"dataset": "shapes", "model": "resnet18", "pretrained": "imagenet", "epochs": 1,
                     "img_size": 32, "lr": 1e-9, "warmup_epochs": 0, "name": "pre"}, home=trained_home,
                    on_event=events.append)
    init = next(e for e in events if e["type"] == "init")
    assert init["source"] == "imagenet" and init["loaded_tensors"] == len(imagenet.state_dict()) - 2  # all but fc
    meta = api.show_model(f"pre:v{out['version']}", home=trained_home)
    weights = torch.load(Path(meta["path"]) / "weights.pt", weights_only=True)
    assert torch.allclose(weights["conv1.weight"], torch.full_like(weights["conv1.weight"], 0.0123), atol=1e-6)
    assert weights["fc.weight"].shape == (3, 512)
    with pytest.raises(Exception, match="no ImageNet weights"):
        api.train({"dataset": "shapes", "model": "tiny_cls", "pretrained": "imagenet", "epochs": 1}, home=trained_home)


def test_time_budget_stops_training(trained_home: Path):
    events: list[dict] = []
    api.train({"dataset": "shapes", "model": "tiny_cls", "time_budget_min": 0.05, "img_size": 64, "name": "budget",
               "patience": 10_000}, home=trained_home, on_event=events.append)
    finished = next(e for e in events if e["type"] == "finished")
    epochs = [e for e in events if e["type"] == "epoch"]
    assert finished["reason"] == "time budget"
    assert 3 <= epochs[-1]["elapsed_s"] <= 3 + 2 * (epochs[-1]["elapsed_s"] / len(epochs)) + 1
    assert all(e["eta_s"] >= 0 for e in epochs)


def test_stop_request_keeps_a_resumable_run(trained_home: Path):
    stop = threading.Event()

    def on_event(event: dict) -> None:
        if event["type"] == "epoch" and event["epoch"] == 2:
            stop.set()

    with pytest.raises(StopRequested):
        api.train({"dataset": "shapes", "model": "tiny_cls", "epochs": 6, "name": "stopme"}, home=trained_home,
                  on_event=on_event, stop=stop)
    run = next(r for r in api.list_runs(home=trained_home) if r["name"] == "stopme")
    assert run["status"] == "stopped"
    out = api.resume_training(run["run"], home=trained_home)
    history = api.show_model(f"stopme:v{out['version']}", home=trained_home)
    assert out["metrics"]["epochs_run"] == 6
    assert api.run_status(run["run"], home=trained_home)["status"] == "completed"
    assert history["run"] == run["run"]


def test_warmup_then_cosine():
    assert lr_factor(0, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(50, 10, 0.5) == pytest.approx(0.5)
    assert lr_factor(99, 10, 1.0) == pytest.approx(0.0)


def _train_in_a_subprocess(tmp_path: Path, shapes_dir: Path, *, epochs: int, name: str) -> tuple[Path, subprocess.Popen]:
    """`edgefactory train` in its own process (slow enough at 128 px to be interrupted mid-run)."""
    home = tmp_path / "ws"
    api.import_dataset(shapes_dir, "shapes", home=home)
    env = {**os.environ, "EDGEFACTORY_HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "train", "--dataset", "shapes", "--model", "tiny_cls",
                             "--epochs", str(epochs), "--img-size", "128", "--name", name, "--quiet"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return home, proc


def test_crash_resumes_from_last_checkpoint(tmp_path: Path, shapes_dir: Path):
    """kill -9 mid-training: the run is marked interrupted and `--resume` finishes it from the checkpoint."""
    home, proc = _train_in_a_subprocess(tmp_path, shapes_dir, epochs=12, name="crashy")
    deadline = time.time() + 180
    run_dir = None
    while time.time() < deadline:
        runs = list((home / "runs").glob("run-*"))
        if runs and (runs[0] / "last.pt").exists():
            run_dir = runs[0]
            ckpt = torch.load(run_dir / "last.pt", weights_only=False)
            if ckpt["state"]["epoch"] >= 2:
                break
        time.sleep(0.2)
    assert run_dir is not None, proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = torch.load(run_dir / "last.pt", weights_only=False)["state"]["epoch"]
    assert done_before < 12
    runs = api.list_runs(home=home)
    assert runs[0]["status"] == "interrupted"
    events: list[dict] = []
    out = api.resume_training(runs[0]["run"], home=home, on_event=events.append)
    resumed = next(e for e in events if e["type"] == "resumed")
    assert resumed["epoch"] >= done_before
    epochs = [e["epoch"] for e in events if e["type"] == "epoch"]
    assert epochs == list(range(resumed["epoch"] + 1, 13))
    meta = api.show_model(f"crashy:v{out['version']}", home=home)
    assert [h["epoch"] for h in json.loads((Path(meta["path"]) / "metadata.json").read_text())["history"]] == list(range(1, 13))


def test_background_job_reports_progress_and_result(trained_home: Path, tmp_path: Path):
    from factory.jobs import JobManager

    home = copy_home(trained_home, tmp_path / "ws")  # the shared workspace stays as other modules expect it
    jobs = JobManager()
    run_id = api.start_training({"dataset": "shapes", "model": "tiny_cls", "epochs": 2, "name": "bg"}, jobs,
                                home=home)
    job = jobs.wait(run_id, timeout=120)
    assert job.error is None and job.result["model"] == "bg"
    assert [e["epoch"] for e in job.events if e["type"] == "epoch"] == [1, 2]
    run = api.run_status(run_id, home=home)
    assert run["status"] == "completed" and run["progress"]["type"] == "registered"


def test_ctrl_c_stops_cleanly_and_keeps_the_run_resumable(tmp_path: Path, shapes_dir: Path):
    home, proc = _train_in_a_subprocess(tmp_path, shapes_dir, epochs=40, name="ctrlc")
    deadline = time.time() + 180
    while time.time() < deadline and not list((home / "runs").glob("run-*/last.pt")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "edgefactory train --resume RUN" in err and "Traceback" not in err
    run = api.list_runs(home=home)[0]
    assert run["status"] == "interrupted"
    assert api.list_models(home=home) == []  # nothing registered from a half-trained run
    assert not [p for p in (home / "runs" / run["run"]).iterdir() if p.name.startswith(".tmp")]
