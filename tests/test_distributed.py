"""Data-parallel training (`--devices N`, factory/training/distributed.py) with real gloo process groups on this
CPU: each rank's share of a batch, gradients averaged into exactly the full batch's gradient with the weights
equal on every rank, and a run in 2 processes that sees the same samples per epoch as one process and reaches
the same accuracy within noise."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from factory import api
from factory.datasets.synthetic import write_digits
from factory.errors import ConfigError, TrainingError
from factory.training import distributed
from factory.training.distributed import Group


def test_each_rank_takes_every_nth_item_padded_to_equal_shares():
    items = list(range(7))
    shares = [Group(rank, 2).shard(items) for rank in range(2)]
    assert shares == [[0, 2, 4, 6], [1, 3, 5, 0]]  # padded by repetition, as DistributedSampler pads
    assert sorted(set(shares[0] + shares[1])) == items
    assert Group(0, 1).shard(items) == items
    assert [Group(r, 3).shard(list(range(9))) for r in range(3)] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def _rank(rank: int, world: int, address: str, out: dict) -> None:
    group = distributed.join(rank, world, address, "cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    unused = torch.nn.Parameter(torch.ones(3))  # in the optimizer, never in the loss: it must keep no gradient
    optimizer = torch.optim.SGD([*model.parameters(), unused], lr=0.5)
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    for _ in range(3):
        mine = group.shard(list(range(16)))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[mine]), y[mine]).backward()
        group.average_gradients(optimizer)
        optimizer.step()
    assert unused.grad is None
    stop, clock = group.agree(float(rank == 1), 10.0 + rank)
    group.ready()
    out[rank] = ([p.detach().clone() for p in model.parameters()], stop, clock, group.from_main([float(rank)]))
    torch.distributed.destroy_process_group()


def test_averaged_gradients_make_every_rank_take_the_full_batch_s_step():
    manager = multiprocessing.get_context("spawn").Manager()
    out = manager.dict()
    address = f"tcp://127.0.0.1:{distributed._free_port()}"
    procs = [multiprocessing.get_context("spawn").Process(target=_rank, args=(r, 2, address, out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    torch.manual_seed(0)  # one process, the whole batch
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    for rank in range(2):
        weights, stop, clock, main = out[rank]
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(weights, model.parameters()))
        assert (stop, clock, main) == (1.0, 11.0, [0.0])  # a flag raised anywhere, the latest clock, rank 0's value


def test_more_processes_than_cores_is_refused_with_the_count(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with pytest.raises(ConfigError, match="asks for 3 CPU processes; this machine has 2 cores") as err:
        distributed.check_devices(3, "cpu")
    assert "--devices 2" in err.value.fix


@pytest.mark.slow
def test_two_gloo_processes_see_the_same_samples_and_reach_the_same_accuracy(tmp_path: Path):
    home = tmp_path / "ws"
    api.import_dataset(write_digits(tmp_path / "digits"), "digits", home=home)
    results = {}
    for devices in (1, 2):
        events: list[dict] = []
        out = api.train({"dataset": "digits", "model": "tiny_cls", "epochs": 6, "batch_size": 32, "img_size": 32,
                         "devices": devices, "name": f"d{devices}"}, home=home, on_event=events.append)
        epochs = [e for e in events if e["type"] == "epoch"]
        results[devices] = (out["metrics"]["accuracy"], [e["samples"] for e in epochs], events)
    (one, seen_one, _), (two, seen_two, events) = results[1], results[2]
    stage = next(e for e in events if e.get("stage") == "data parallel")
    assert stage["processes"] == 2 and stage["backend"] == "gloo" and stage["batch_per_process"] == 16
    train_images = api.inspect_dataset("digits", home=home)["splits"]["train"]
    assert seen_one == [train_images] * 6
    assert all(train_images <= s <= train_images + 1 for s in seen_two)  # the last batch padded to equal shares
    assert one > 0.8 and abs(one - two) <= 0.05


@pytest.mark.slow
def test_a_rank_killed_mid_run_fails_the_run_by_name_and_resume_goes_on_from_the_checkpoint(tmp_path: Path):
    import subprocess

    home = tmp_path / "ws"
    api.import_dataset(write_digits(tmp_path / "digits"), "digits", home=home)

    def kill_rank_1(event: dict) -> None:
        if event["type"] == "epoch" and event["epoch"] == 2:  # rank 0's thread, between two epochs
            subprocess.run(["pkill", "-9", "-f", f"factory.training.rank 1 2 .* {event['run']}"], check=True)

    with pytest.raises(TrainingError, match="Data-parallel rank 1 stopped") as err:
        api.train({"dataset": "digits", "model": "tiny_cls", "epochs": 5, "batch_size": 32, "img_size": 32,
                   "devices": 2, "name": "k"}, home=home, on_event=kill_rank_1)
    assert "--resume" in err.value.fix and "rank-1.log" in err.value.fix
    (run,) = api.list_runs(home=home)
    assert run["status"] == "failed" and api.list_models(home=home) == []
    events: list[dict] = []
    out = api.resume_training(run["run"], home=home, on_event=events.append)
    resumed = next(e for e in events if e["type"] == "resumed")
    assert resumed["epoch"] == 2  # the checkpoint of epoch 2, written before the kill: no epoch repeated
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [3, 4, 5]
    assert out["metrics"]["accuracy"] > 0.8


def _detection(root: Path) -> tuple[Path, dict]:
    from factory.tasks.detection.datasets import write_detection

    return write_detection(root, images=40, size=160, seed=0), {"model": "tiny_det", "img_size": 128}


def _retrieval(root: Path) -> tuple[Path, dict]:
    from factory.tasks.retrieval.synthetic import write_identities

    return write_identities(root, identities=16, per_identity=5, size=48, seed=7), {"model": "tiny_cls",
                                                                                      "embedding_dim": 16}


def _ocr(root: Path) -> tuple[Path, dict]:
    from factory.tasks.ocr.formats import write_ocr

    # the default architecture (PP-OCRv4's networks where the wheel is here): converted graphs in every rank
    return write_ocr(root, "icdar2015", count=16, seed=5, languages=("en", "zh")), {"img_size": 320}


@pytest.mark.slow
@pytest.mark.parametrize("task, data", [("detection", _detection), ("retrieval", _retrieval), ("ocr", _ocr)])
def test_every_task_trains_in_two_processes(tmp_path: Path, task: str, data):
    home = tmp_path / "ws"
    folder, options = data(tmp_path / task)
    api.import_dataset(folder, "d", task=task, home=home)
    events: list[dict] = []
    out = api.train({"dataset": "d", "epochs": 2, "devices": 2, "name": "m", **options}, home=home,
                    on_event=events.append)
    assert any(e.get("stage") == "data parallel" for e in events)
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]
    (registered,) = [e for e in events if e["type"] == "registered"]
    assert out["version"] == 1 and registered["score"] >= 0
    if task == "ocr":  # PP-OCRv4's detector, fine-tuned in two processes, still finds the text
        assert out["metrics"]["det"]["hmean"] >= 0.8
    (log,) = (home / "runs").glob("*/rank-1.log")
    assert "Traceback" not in log.read_text(encoding="utf-8")
