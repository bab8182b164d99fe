"""Compression: calibration-set selection, structured pruning, and `compress` end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compression.calibration import select_calibration
from factory.tasks import TASKS
from compression.pruning import model_cost, prune
from factory import api as core_api
from factory.errors import ConfigError, DatasetError, UnsupportedSpecError
from factory.tasks.base import fit_to_state_dict
from factory.tasks.classification import MODELS, build_model
from targets import api


LABELS = TASKS.get("classification").calibration_labels  # one label per image


def _entries(counts: dict[str, int]) -> list[dict]:
    return [{"file": f"{c}/{i}.png", "label": c} for c, n in counts.items() for i in range(n)]


def test_calibration_covers_every_class_round_robin():
    chosen, report = select_calibration(_entries({"a": 200, "b": 5, "c": 150}), ["a", "b", "c"], size=60, labels_of=LABELS)
    assert report["size"] == 60 and report["per_class"] == {"a": 28, "b": 5, "c": 27}
    assert report["missing_classes"] == [] and len({e["file"] for e in chosen}) == 60
    again, _ = select_calibration(_entries({"a": 200, "b": 5, "c": 150}), ["a", "b", "c"], size=60, labels_of=LABELS)
    assert again == chosen  # seeded
    assert any("fewer than 100" in w for w in report["warnings"])


def test_calibration_reports_missing_classes_and_refuses_nothing():
    _, report = select_calibration(_entries({"a": 150}), ["a", "b"], size=120, labels_of=LABELS)
    assert report["missing_classes"] == ["b"] and any("class(es) b" in w for w in report["warnings"])
    with pytest.raises(DatasetError) as info:
        select_calibration(_entries({"a": 3}), ["a"], size=0, labels_of=LABELS)
    assert info.value.code == "CALIBRATION_EMPTY"
    with pytest.raises(DatasetError, match="train split is empty"):
        select_calibration([], ["a"], size=10, labels_of=LABELS)


@pytest.mark.parametrize("arch", ["tiny_cls", "mobilenet_v3_small", "resnet18"])
def test_pruning_reaches_the_mac_goal_and_rebuilds_from_a_plain_state_dict(arch: str):
    model = build_model(arch, 4).eval()
    report = prune(model, [MODELS.get(arch).head], [3, 64, 64], mac_reduction=0.35)
    assert report["after"]["macs"] <= 0.65 * report["before"]["macs"] and report["mac_ratio"] >= 1.5
    assert model_cost(model, [3, 64, 64]) == report["after"]
    assert model.get_submodule({"tiny_cls": "fc", "mobilenet_v3_small": "classifier.3", "resnet18": "fc"}[arch]).out_features == 4
    rebuilt = fit_to_state_dict(build_model(arch, 4), model.state_dict())
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(rebuilt.eval()(x), model(x), atol=1e-6)


def test_pruning_needs_a_goal():
    with pytest.raises(ConfigError):
        prune(build_model("tiny_cls", 3), ["fc"], [3, 32, 32])
    with pytest.raises(ConfigError, match="out of range"):
        prune(build_model("tiny_cls", 3), ["fc"], [3, 32, 32], mac_reduction=1.5)


def test_compress_registers_a_pruned_version_and_exports_it(trained_home: Path):
    events: list[str] = []
    out = api.compress("shapes-tiny:v1", "onnxruntime", prune=0.3, finetune_epochs=2, max_drop=100.0,
                       home=trained_home, log=events.append)
    p = out["pruning"]
    assert p["after"]["macs"] <= 0.7 * p["before"]["macs"] and p["before"]["latency_ms"] > 0 < p["after"]["latency_ms"]
    assert p["finetune"]["epochs"] == 2 and p["finetune"]["distilled_from_parent"]
    meta = core_api.show_model(f"{out['model']}:v{out['version']}", home=trained_home)
    assert meta["pruned"] and meta["parent"] == "shapes-tiny:v1" and meta["metrics"]["macs"] == p["after"]["macs"]
    assert out["parity"]["passed"] and Path(out["path"], "model.onnx").is_file()
    result = core_api.evaluate(f"{out['model']}:v{out['version']}", home=trained_home)  # the pruned model reloads
    assert result["metrics"]["accuracy"] == pytest.approx(p["after"]["accuracy"])
    assert any(line.startswith("prune step 1") for line in events) and any("registered" in line for line in events)
    core_api.delete_model(f"{out['model']}:v{out['version']}", home=trained_home)


def test_latency_target_needs_a_runtime_that_runs_here(trained_home: Path):
    with pytest.raises(UnsupportedSpecError, match="cannot be measured for web"):
        api.compress("shapes-tiny:v1", "web", target_latency_ms=1.0, home=trained_home)


def test_compress_checks_the_export_before_pruning_and_registers_nothing_on_failure(trained_home: Path,
                                                                                      monkeypatch: pytest.MonkeyPatch):
    before = [m["ref"] for m in core_api.list_models(home=trained_home)]
    with pytest.raises(UnsupportedSpecError, match="does not support fp16"):
        api.compress("shapes-tiny:v1", "onnxruntime", prune=0.3, precision="fp16", home=trained_home)
    import targets.compress

    def broken_export(*args, **kwargs):
        raise UnsupportedSpecError("simulated export failure", fix="none")

    monkeypatch.setattr(targets.compress, "export_in_child", broken_export)
    with pytest.raises(UnsupportedSpecError, match="simulated"):
        api.compress("shapes-tiny:v1", "onnxruntime", prune=0.3, finetune_epochs=1, max_drop=100.0, home=trained_home)
    assert [m["ref"] for m in core_api.list_models(home=trained_home)] == before  # the pruned version was removed
    run = [r for r in core_api.list_runs(home=trained_home) if r["status"] == "failed"][-1]
    assert "export of the pruned model failed" in run["error"]
