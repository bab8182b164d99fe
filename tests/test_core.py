"""Registry, config checks, workspace atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factory.config import TrainConfig
from factory.errors import ConfigError, NotFoundError
from factory.registry import Registry
from factory.tasks.classification import MODELS
from factory.workspace import Workspace, atomic_write_bytes, atomic_write_json, publish_dir, staging_dir


def test_registry_rejects_duplicates_and_suggests_names():
    reg: Registry[int] = Registry("widget")
    reg.add("mobile", 1)
    with pytest.raises(ValueError):
        reg.add("mobile", 2)
    with pytest.raises(NotFoundError, match="Did you mean 'mobile'"):
        reg.get("mobil")


def test_model_registry_has_required_architectures():
    assert {"mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18", "tiny_cls"} <= set(MODELS.names())
    with pytest.raises(NotFoundError, match="Did you mean 'resnet18'"):
        MODELS.get("resnet1")


def test_config_rejects_unknown_keys_with_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        TrainConfig.from_dict({"dataset": "d", "epoch": 3})


@pytest.mark.parametrize("key,value", [("epochs", 0), ("lr", 5.0), ("batch_size", 0), ("img_size", 8),
                                       ("time_budget_min", -1), ("pretrained", "Coco Weights"), ("device", "tpu")])
def test_config_range_checks_name_the_fix(key, value):
    with pytest.raises(ConfigError, match=rf"option {key}=.* is not .*Fix: Send {key} as "):
        TrainConfig.from_dict({"dataset": "d", key: value})


def test_config_needs_a_dataset():
    with pytest.raises(ConfigError, match="--dataset"):
        TrainConfig.from_dict({})


def test_workspace_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EDGEFACTORY_HOME", str(tmp_path / "h"))
    ws = Workspace.open()
    assert ws.home == (tmp_path / "h").resolve()
    assert all((ws.home / d).is_dir() for d in ("datasets", "runs", "models", "artifacts", "reports"))


def test_atomic_write_keeps_old_content_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "meta.json"
    atomic_write_json(target, {"v": 1})

    def crash(*_a, **_k):
        raise KeyboardInterrupt  # Ctrl-C between write and rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b'{"v": 2, "half')
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]  # no temporary file left behind


def test_staging_dir_is_removed_on_interrupt_and_published_atomically(tmp_path: Path):
    final = tmp_path / "models" / "m" / "v1"
    with pytest.raises(KeyboardInterrupt):
        with staging_dir(final) as tmp:
            (tmp / "weights.pt").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not final.exists() and list((tmp_path / "models" / "m").iterdir()) == []
    with staging_dir(final) as tmp:
        (tmp / "weights.pt").write_bytes(b"full")
        publish_dir(tmp, final)
    assert (final / "weights.pt").read_bytes() == b"full"
    with staging_dir(final) as tmp, pytest.raises(FileExistsError):
        publish_dir(tmp, final)  # never replaces a published version
