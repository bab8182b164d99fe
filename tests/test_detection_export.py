"""The detector through the one export driver, on every target: parity on the decoded boxes (not
argmax), the accuracy budget in points of mAP@0.5 with the target's own runtime, detection-aware
calibration, INT8 strategies the task cannot use refused, and the report's per-size recall deltas
with the small-object guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import report as reports
from compression.calibration import select_calibration
from factory.api import session
from factory.errors import ExportError, UnsupportedSpecError
from factory.datasets.splits import DatasetSplits
from factory.refs import dataset_row_for
from factory.models import load_model, resolve_model
from factory.tasks import task_of
from factory.tasks.detection.task import Detection
from targets import api as targets_api
from tests.conftest import copy_home

REF = "scenes-tiny-det:v1"
# the default run: every target once (INT8 where it is cheap here); the rest of the matrix is slow (LiteRT and
# ExecuTorch INT8 take about a minute each on 2 cores; their classifier INT8 paths are in the default run)
DEFAULT = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"), ("tflite", "fp32"),
           ("executorch", "fp32"), ("ncnn", "fp32"), ("web", "fp32"), ("coreml", "fp32"), ("tensorrt", "fp32")]
SLOW = [("tflite", "int8"), ("executorch", "int8"), ("web", "int8"), ("ncnn", "fp16"), ("coreml", "int8"),
        ("tensorrt", "int8"), ("tensorrt", "fp16")]


@pytest.fixture(scope="module")
def export_home(det_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("detexport") / "ws"
    copy_home(det_home, home)
    return home


def loaded(home: Path) -> tuple[torch.nn.Module, dict, Path, dict]:
    with session(home) as (ws, catalog):
        model, meta = load_model(ws, resolve_model(catalog, REF))
        data = DatasetSplits.open(ws, dataset_row_for(catalog, meta["dataset"]))
        root, test = data.root, data.entries("test")
    return model, meta, root, test


def check_export(home: Path, target: str, precision: str) -> None:
    from targets.base import TARGETS

    caps = TARGETS.get(target)().capabilities
    if caps.missing_modules("export"):
        pytest.skip(f"{target} needs {', '.join(caps.missing_modules('export'))} (scripts/setup installs it)")
    out = targets_api.export(REF, target, precision=precision, max_drop=100, keep_if_slower=True, home=home)
    meta = json.loads((Path(out["path"]) / "metadata.json").read_text())
    model_meta = loaded(home)[1]
    assert meta["task"] == "detection" and meta["metric"] == "map50"
    assert meta["output_shape"] == [sum(h * w for h, w in model_meta["postprocessing"]["feature_sizes"]), 3 + 5]
    # the driver's score of PyTorch is the mAP@0.5 training measured on the same split
    assert out["reference_accuracy"] == pytest.approx(model_meta["metrics"]["map50"], abs=1e-9)
    if not meta["runnable_here"]:  # Core ML on Linux: validated, not run
        assert target == "coreml" and out["accuracy"] is None
        return
    parity = out["parity"]
    assert parity["passed"] and parity["agreement_kind"] == "box" and parity["boxes_compared"] > 50
    if precision == "fp32":
        assert parity["box_agreement"] >= 0.98 and parity["mean_iou"] > 0.999 and parity["max_abs_diff"] < 1e-3
        assert out["accuracy"] == pytest.approx(out["reference_accuracy"], abs=0.01)
    else:
        assert parity["box_agreement"] >= 0.85 and parity["mean_iou"] > 0.8
        assert abs(out["accuracy_drop_points"]) < 15  # a 12-epoch tiny model; the 1-point bar is the benchmark's
    assert set(meta["reference_by_size"]) == {"small", "medium", "large"}


@pytest.mark.parametrize("target,precision", DEFAULT)
def test_the_detector_exports_with_box_parity(export_home: Path, target: str, precision: str):
    check_export(export_home, target, precision)


@pytest.mark.slow
@pytest.mark.parametrize("target,precision", SLOW)
def test_the_detector_exports_with_box_parity_everywhere_else(export_home: Path, target: str, precision: str):
    check_export(export_home, target, precision)


def test_box_parity_catches_moved_boxes_and_tolerates_noise(det_home: Path):
    model, meta, root, test = loaded(det_home)
    task = task_of(meta)
    data = task.eval_set(root, test, meta)
    with torch.no_grad():
        reference = model(torch.from_numpy(data.inputs)).numpy()
    c = meta["num_classes"]
    same = task.parity(reference.copy(), reference, "fp32", meta)
    assert same["passed"] and same["box_agreement"] == 1.0 and same["boxes_compared"] > 0
    noisy = reference + np.random.default_rng(0).normal(0, 0.02, reference.shape).astype(np.float32)
    assert task.parity(noisy, reference, "int8", meta)["passed"]
    assert not task.parity(noisy, reference, "fp32", meta)["passed"]  # fp32 holds the raw outputs to 1e-3
    moved = reference.copy()
    moved[..., c:c + 2] += 1.0  # left and top distances x2.7: every box grows up and left
    verdict = task.parity(moved, reference, "int8", meta)
    assert not verdict["passed"] and verdict["box_agreement"] < 0.5
    relabelled = reference.copy()  # right boxes, one class for all: the other classes' boxes are not found
    relabelled[..., c - 1] = reference[..., :c].max(axis=-1)
    relabelled[..., :c - 1] = -20.0
    assert not task.parity(relabelled, reference, "int8", meta)["passed"]


def test_detection_scores_match_the_training_evaluation(det_home: Path):
    model, meta, root, test = loaded(det_home)
    data = Detection().eval_set(root, test, meta)
    with torch.no_grad():
        outputs = model(torch.from_numpy(data.inputs)).numpy()
    scores = Detection().score(outputs, data.truth, meta)
    assert scores["map50"] == pytest.approx(meta["metrics"]["map50"], abs=1e-9)
    assert set(scores["recall_by_class"]) == set(meta["classes"]) and scores["images"] == len(test)


def test_calibration_draws_every_class_of_a_detection_set():
    box = lambda label: {"label": label, "bbox": [0, 0, 10, 10]}  # noqa: E731
    common = [{"file": f"c{i}.png", "label": None, "boxes": [box("circle"), box("square")]} for i in range(40)]
    rare = [{"file": f"t{i}.png", "label": None, "boxes": [box("circle"), box("triangle")]} for i in range(3)]
    empty = [{"file": f"e{i}.png", "label": None, "boxes": []} for i in range(5)]
    chosen, report = select_calibration(common + rare + empty, ["circle", "square", "triangle"], size=9,
                                        labels_of=Detection().calibration_labels)
    assert len(chosen) == 9 and report["missing_classes"] == []
    assert report["per_class"]["triangle"] == 3  # drawn under its rarest class, so the 3 rare images all come first
    assert sum(not e["boxes"] for e in chosen) == 3  # empty images are calibrated as negatives too


def test_int8_strategies_the_task_cannot_use_are_refused_and_runtime_failures_named(export_home: Path, monkeypatch):
    with pytest.raises(UnsupportedSpecError, match="qat"):
        targets_api.export(REF, "openvino", precision="int8", strategies=("qat",), home=export_home)
    from targets.onnxruntime import OnnxRuntimeTarget

    def broken(self, out, meta, device="cpu"):
        raise RuntimeError("kernel missing")
    monkeypatch.setattr(OnnxRuntimeTarget, "load", broken)
    before = sorted(p.name for p in (export_home / "artifacts").rglob("*"))
    with pytest.raises(ExportError, match="loading or running the exported file.*kernel missing"):
        targets_api.export(REF, "onnxruntime", precision="fp32", home=export_home, in_process=True)
    assert sorted(p.name for p in (export_home / "artifacts").rglob("*")) == before


def test_pruning_a_detector_is_refused_with_the_way_forward(det_home: Path):
    with pytest.raises(UnsupportedSpecError, match="classification.*--precision int8"):
        targets_api.compress(REF, "openvino", prune=0.3, home=det_home)


def test_report_guard_flags_a_small_object_recall_drop():
    def row(target, precision, small, p50):
        return {"target": target, "precision": precision, "device": "here", "device_name": "here", "measured": True,
                "latency_ms": {"p50": p50}, "max_drop": 5.0, "accuracy_delta_points": -0.5, "warnings": [],
                "per_size_delta": None if small is None else {"small": small, "medium": 0.0, "large": 0.0}}
    rows = [row("openvino", "fp32", 0.0, 2.0), row("openvino", "int8", -3.5, 1.0), row("onnxruntime", "int8", -1.5, 1.0)]
    warnings = reports.guard(rows, budget=1.0)
    assert [(w["code"], w["row"]) for w in warnings] == [("SMALL_OBJECT_RECALL_DROP", 1)]
    assert "3.50 points fewer small objects" in warnings[0]["message"] and rows[1]["warnings"] == ["SMALL_OBJECT_RECALL_DROP"]


def test_a_detection_report_measures_map_and_recall_by_size(det_home: Path, tmp_path: Path):
    from benchmarks import api as bench_api
    from benchmarks.harness import Timing

    home = tmp_path / "ws"
    copy_home(det_home, home)
    targets_api.export(REF, "openvino", precision="int8", max_drop=100, keep_if_slower=True, home=home)
    fast = Timing(warmup=1, min_iters=3, min_time_s=0.05)
    out = bench_api.report(REF, home=home, timing=fast, budget=100)
    rep = json.loads(Path(out["json"]).read_text())
    assert rep["task"] == "detection" and rep["metric"] == "mAP@0.5"
    rows = {(r["target"], r["precision"]): r for r in rep["results"] if r["measured"]}
    eager, int8 = rows[("pytorch", "fp32")], rows[("openvino", "int8")]
    assert eager["accuracy"] == pytest.approx(loaded(home)[1]["metrics"]["map50"], abs=1e-9)
    assert int8["metric"] == "map50" and {"small", "medium"} <= set(int8["per_size_delta"])  # no large ones at 128 px
    assert int8["accuracy_delta_points"] == pytest.approx((int8["accuracy"] - eager["accuracy"]) * 100)
    html = Path(out["html"]).read_text()
    assert 'data-plot="per-size-delta"' in html and "mAP@0.5" in html
