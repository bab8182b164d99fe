"""Targets: a contract test over every registered target, INT8 through the driver with bounded
drift, and bad input (unknown target, unsupported precision, empty calibration, corrupt model,
parity and budget failures) that must leave the catalog and earlier artifacts as they were."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from factory import api as core_api
from factory.datasets.synthetic import write_shapes
from factory.errors import BudgetError, ConfigError, ModelFileError, NotFoundError, ParityError, UnsupportedSpecError
from targets import TARGETS, api
from targets.driver import ExportJob
from tests.conftest import copy_home

MODEL = "shapes-tiny:v1"
META_KEYS = {"model", "version", "target", "precision", "files", "size_mb", "input_shape", "preprocessing",
             "postprocessing", "classes", "parity", "accuracy", "reference_accuracy", "compression", "tool_versions"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a tiny_cls model trained well enough that its logits have clear margins
    (INT8 parity is judged by top-1 agreement, which near-ties would make a coin toss)."""
    root = tmp_path_factory.mktemp("targets")
    data = write_shapes(root / "shapes", classes=3, per_class=60, seed=2)
    home = root / "ws"
    core_api.import_dataset(data, "shapes", home=home)
    core_api.train({"dataset": "shapes", "model": "tiny_cls", "epochs": 25, "name": "shapes-tiny"}, home=home)
    return home


def _skip_if_missing(name: str) -> None:
    missing = TARGETS.get(name).capabilities.missing_modules("export")
    if missing:
        pytest.skip(f"target {name} needs Python package(s): {', '.join(missing)}")


def _artifact_files(home: Path) -> set[str]:
    root = home / "artifacts"
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("name", TARGETS.names())
def test_target_contract(name: str, home: Path):
    """Every target: export the first precision it supports, parity, re-evaluation, metadata enough to run it."""
    _skip_if_missing(name)
    target = TARGETS.get(name)()
    precision = target.capabilities.precisions[0]
    out = api.export(MODEL, name, precision=precision, home=home)
    folder = Path(out["path"])
    meta = json.loads((folder / "metadata.json").read_text())
    assert META_KEYS <= set(meta) and meta["target"] == name and meta["precision"] == precision
    assert all((folder / f).exists() for f in meta["files"]) and meta["size_mb"] > 0
    if not meta["runnable_here"]:
        assert target.capabilities.runs_here is False and meta["parity"]["reason"]
        return
    assert meta["parity"]["passed"] and meta["parity"]["images"] == 64  # 18 test + 18 val + 28 train
    assert meta["accuracy"] == pytest.approx(meta["reference_accuracy"])
    # metadata.json is enough to run the artifact without the catalog
    runner = target.load(folder, meta, meta["device"])
    logits = np.asarray(runner(np.zeros(meta["input_shape"][:1] and [1, *meta["input_shape"][1:]], np.float32)))
    assert logits.shape == (1, len(meta["classes"]))
    rows = api.list_artifacts(MODEL, home=home)
    assert any(r["target"] == name and r["precision"] == precision for r in rows)


INT8_TARGETS = [n for n in TARGETS.names() if "int8" in TARGETS.get(n).capabilities.precisions]


@pytest.mark.parametrize("name", INT8_TARGETS)
def test_int8_export_with_bounded_drift(name: str, home: Path):
    _skip_if_missing(name)
    # 18 test images: a budget of 6 points allows one image to change its answer
    out = api.export(MODEL, name, precision="int8", max_drop=6.0, keep_if_slower=True, calibration_size=40, home=home)
    comp = out["compression"]
    # the converters' and quantizers' own output (NNCF's progress bars among it) went to the export's log file
    output = (home / "logs" / f"export-shapes-tiny-v1-{name}-int8.log").read_text()
    assert "--- " in output and (name != "openvino" or "Statistics collection" in output)
    if TARGETS.get(name).capabilities.int8_calibrated:
        assert comp["calibration"]["size"] == 40
        assert comp["calibration"]["per_class"] == {"circle": 14, "square": 13, "triangle": 13}
    else:  # weight-only INT8 (Core ML): no calibration images are drawn
        assert comp["calibration"] is None
    assert comp["tried"][0]["strategy"] == comp["strategy"] or comp["tried"][-1]["strategy"] == comp["strategy"]
    if out["runnable_here"]:
        assert out["accuracy_drop_points"] <= 6.0 and out["parity"]["top1_agreement"] >= 0.9
        speed = comp["speed"]
        assert "skipped" in speed or (speed["fp32_ms"] > 0 and speed["int8_ms"] > 0)


def test_unknown_target_suggests_the_nearest(home: Path):
    with pytest.raises(NotFoundError, match="Did you mean 'openvino'"):
        api.export(MODEL, "openvin0", home=home)


def test_every_violation_is_listed_at_once(home: Path):
    before = _artifact_files(home)
    with pytest.raises(UnsupportedSpecError) as info:
        api.export(MODEL, "web", precision="fp16", device="cuda", dynamic_batch=True, home=home)
    problems = info.value.details
    assert len(problems) == 3 and any("fp16" in p for p in problems) and any("cuda" in p for p in problems)
    assert any("static shapes" in p for p in problems)
    with pytest.raises(UnsupportedSpecError, match="does not support fp16"):
        api.export(MODEL, "onnxruntime", precision="fp16", home=home)
    assert _artifact_files(home) == before


def test_empty_calibration_set_is_refused(home: Path):
    before = (_artifact_files(home), api.list_artifacts(home=home))
    # asked for: the export's parameter schema refuses it before anything runs
    with pytest.raises(ConfigError, match="calibration_size=0 is not a whole number from 1"):
        api.export(MODEL, "openvino", precision="int8", calibration_size=0, home=home)
    # (an empty train split found while calibrating: CALIBRATION_EMPTY, tests/test_compression.py)
    assert (_artifact_files(home), api.list_artifacts(home=home)) == before


def test_corrupt_model_file_is_a_clear_error(home: Path, tmp_path: Path):
    broken = tmp_path / "ws"
    copy_home(home, broken)
    meta = core_api.show_model(MODEL, home=broken)
    (Path(meta["path"]) / "weights.pt").write_bytes(b"not a checkpoint")
    before = (_artifact_files(broken), api.list_artifacts(home=broken))
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        api.export(MODEL, "onnxruntime", home=broken)
    assert (_artifact_files(broken), api.list_artifacts(home=broken)) == before


def test_parity_failure_is_an_error_and_keeps_the_earlier_artifact(home: Path, monkeypatch: pytest.MonkeyPatch):
    first = api.export(MODEL, "onnxruntime", home=home)
    kept = (Path(first["path"]) / "model.onnx").read_bytes()
    before = (_artifact_files(home), api.list_artifacts(home=home))
    target_cls = type(TARGETS.get("onnxruntime")())
    real_load = target_cls.load

    def drifting_load(self, out, meta, device="cpu"):
        run = real_load(self, out, meta, device)
        return lambda x: run(x) + np.linspace(0, 0.5, len(meta["classes"]), dtype=np.float32)

    monkeypatch.setattr(target_cls, "load", drifting_load)
    with pytest.raises(ParityError, match="differs from PyTorch"):
        api.export(MODEL, "onnxruntime", home=home, in_process=True)  # the patch lives in this process
    assert (_artifact_files(home), api.list_artifacts(home=home)) == before
    assert (Path(first["path"]) / "model.onnx").read_bytes() == kept


def test_budget_refusal_reports_everything_tried(home: Path, monkeypatch: pytest.MonkeyPatch):
    before = (_artifact_files(home), api.list_artifacts(home=home))
    real_attempt = ExportJob.attempt

    def worse(self, strategy, request):
        attempt = real_attempt(self, strategy, request)
        attempt.accuracy = attempt.accuracy - 0.5  # as if quantization had cost 50 points
        return attempt

    monkeypatch.setattr(ExportJob, "attempt", worse)
    with pytest.raises(BudgetError, match="No int8 onnxruntime artifact met the budget") as info:
        api.export(MODEL, "onnxruntime", precision="int8", calibration_size=30, home=home, in_process=True)
    tried = info.value.details["tried"]
    assert [t["strategy"] for t in tried] == ["ptq", "ptq_mixed", "accuracy_control"]
    assert all(t["drop_points"] >= 40 for t in tried)  # the 50-point penalty, give or take one test image
    assert (_artifact_files(home), api.list_artifacts(home=home)) == before


@pytest.mark.slow  # QAT fine-tunes for real (45 s here)
def test_quantization_aware_training_is_the_last_resort_for_openvino(home: Path):
    assert TARGETS.get("openvino").int8_strategies[-1] == "qat"
    out = api.export(MODEL, "openvino", precision="int8", strategies=("qat",), max_drop=6.0, keep_if_slower=True,
                     calibration_size=40, home=home)
    comp = out["compression"]
    assert comp["strategy"] == "qat" and comp["qat"]["epochs"] == 3 and [t["strategy"] for t in comp["tried"]] == ["qat"]
    assert out["parity"]["passed"] and out["accuracy_drop_points"] <= 6.0
    xml = (Path(out["path"]) / "model.xml").read_text()
    assert "FakeQuantize" in xml  # an INT8 IR, from the trained fake quantizers
    with pytest.raises(UnsupportedSpecError, match="no INT8 strategy 'qat'"):
        api.export(MODEL, "onnxruntime", precision="int8", strategies=("qat",), home=home)


@pytest.mark.gpu
def test_tensorrt_engine_builds_and_matches_on_a_gpu(home: Path):
    from targets.tensorrt import ENGINE, engine_buildable

    ok, reason = engine_buildable()
    if not ok:
        pytest.skip(f"TensorRT engine build needs the tensorrt package and an NVIDIA GPU: {reason}")
    for precision in ("fp16", "int8"):
        out = api.export(MODEL, "tensorrt", precision=precision, max_drop=6.0, keep_if_slower=True, home=home)
        assert (Path(out["path"]) / ENGINE).is_file() and out["parity"]["passed"]
        assert not any("engine not built" in note for note in out["notes"])


def test_tensorrt_without_a_gpu_says_how_to_build_the_engine(home: Path):
    from targets.tensorrt import engine_buildable

    if engine_buildable()[0]:
        pytest.skip("this machine can build engines; the GPU test covers it")
    out = api.export(MODEL, "tensorrt", precision="int8", max_drop=6.0, calibration_size=40, home=home)
    note = next(n for n in out["notes"] if "engine not built" in n)
    assert "trtexec --onnx=model.onnx --int8 --saveEngine=model.plan" in note
    assert out["compression"]["speed"]["skipped"].startswith("validated with onnxruntime")
