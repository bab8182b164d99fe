"""Exporting an OCR model (two networks) through the one driver: one artifact with a subfolder per network, each
network's parity and score, the pipeline scored together, inputs whose height and width vary, INT8 per network
with a network that misses the budget kept at FP32, and a clear refusal (nothing written) from targets that take
one fixed input size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from factory import api
from factory.errors import BudgetError, UnsupportedSpecError
from factory.models import load_model, resolve_model
from factory.tasks.ocr.formats import write_ocr
from factory.workspace import Workspace
from factory.catalog import Catalog
from targets import api as targets_api
from targets.driver import ExportJob


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ocr-export")
    home = root / "ws"
    api.import_dataset(write_ocr(root / "scenes", "icdar2015", count=24, seed=3, languages=("en", "zh")), "signs",
                       task="ocr", home=home)
    api.train({"dataset": "signs", "model": "tiny_ocr", "epochs": 1, "name": "reader"}, home=home)
    return home


def torch_networks(home: Path) -> tuple[torch.nn.Module, dict]:
    ws = Workspace.open(home)
    catalog = Catalog(ws.catalog_path)
    try:
        return load_model(ws, resolve_model(catalog, "reader"))
    finally:
        catalog.close()


def test_both_networks_export_into_one_artifact_and_take_any_height_and_width(home: Path):
    import onnxruntime as ort

    out = targets_api.export("reader", "onnxruntime", home=home, in_process=True)
    folder = Path(out["path"])
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["files"] == ["detector/model.onnx", "recognizer/model.onnx"]
    assert set(meta["networks"]) == {"detector", "recognizer"} and meta["compression"]["by_network"] == {
        "detector": "fp32", "recognizer": "fp32"}
    assert meta["parity"]["checked"] and meta["parity"]["passed"]
    assert meta["networks"]["detector"]["parity"]["agreement_kind"] == "box"
    assert meta["networks"]["recognizer"]["parity"]["agreement_kind"] == "string"
    assert meta["networks"]["recognizer"]["parity"]["compared"] > 0  # the labelled crops at least
    # FP32 files read exactly what PyTorch reads: the composed score is the reference
    assert meta["metric"] == "e2e_hmean" and meta["accuracy"] == pytest.approx(meta["reference_accuracy"])
    assert set(meta["metrics"]) >= {"det", "rec", "e2e"}
    model, _ = torch_networks(home)
    rng = np.random.default_rng(0)
    for name, shapes in (("detector", [(1, 3, 96, 160), (1, 3, 224, 64)]), ("recognizer", [(1, 3, 32, 40), (1, 3, 32, 200)])):
        session = ort.InferenceSession(str(folder / name / "model.onnx"), providers=["CPUExecutionProvider"])
        for shape in shapes:
            x = rng.standard_normal(shape).astype(np.float32)
            with torch.no_grad():
                expected = getattr(model, name)(torch.from_numpy(x)).numpy()
            got = session.run(None, {"input": x})[0]
            assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-3


@pytest.mark.slow
def test_an_int8_network_that_misses_the_budget_stays_fp32_beside_the_other_at_int8(home: Path, monkeypatch):
    real_search = ExportJob.search

    def recognizer_misses(self, request, t0):
        if self.meta.get("network") == "recognizer" and self.plan.precision == "int8":
            raise BudgetError("INT8 recognizer lost 12 points", fix="-")
        return real_search(self, request, t0)

    monkeypatch.setattr(ExportJob, "search", recognizer_misses)
    lines: list[str] = []
    out = targets_api.export("reader", "openvino", precision="int8", calibration_size=8, keep_if_slower=True, home=home,
                             in_process=True, log=lines.append)
    meta = json.loads((Path(out["path"]) / "metadata.json").read_text())
    assert meta["compression"]["by_network"] == {"detector": "int8", "recognizer": "fp32"}
    assert any("kept at fp32: INT8 recognizer lost 12 points" in n for n in meta["networks"]["recognizer"]["notes"])
    assert any(line.startswith("recognizer") and "INT8 not kept" in line for line in lines)
    assert meta["networks"]["detector"]["compression"]["strategy"] in ("ptq", "ptq_mixed")


@pytest.mark.slow
def test_no_network_at_int8_is_a_budget_error_that_writes_nothing(home: Path, monkeypatch):
    real_search = ExportJob.search

    def misses(self, request, t0):
        if self.plan.precision == "int8":
            raise BudgetError(f"INT8 {self.meta['network']} lost 12 points", fix="-")
        return real_search(self, request, t0)

    monkeypatch.setattr(ExportJob, "search", misses)
    before = sorted(p.relative_to(home) for p in (home / "artifacts").rglob("*"))
    with pytest.raises(BudgetError, match="No network of this ocr model"):
        targets_api.export("reader", "onnxruntime", precision="int8", calibration_size=8, home=home, in_process=True)
    assert sorted(p.relative_to(home) for p in (home / "artifacts").rglob("*")) == before


def test_targets_of_one_fixed_input_size_refuse_ocr_networks_and_name_those_that_take_them(home: Path):
    before = sorted(p.relative_to(home) for p in (home / "artifacts").rglob("*"))
    with pytest.raises(UnsupportedSpecError, match="height or width varies") as info:
        targets_api.export("reader", "tflite", home=home, in_process=True)
    assert "openvino" in info.value.message and "onnxruntime" in info.value.message
    assert sorted(p.relative_to(home) for p in (home / "artifacts").rglob("*")) == before


@pytest.mark.slow
def test_the_report_has_a_row_per_network_and_the_page_split_by_stage(home: Path):
    from benchmarks import api as bench_api
    from benchmarks.harness import Timing

    if not any((home / "artifacts").rglob("onnxruntime/fp32/metadata.json")):
        targets_api.export("reader", "onnxruntime", home=home, in_process=True)
    out = bench_api.report("reader", home=home, timing=Timing(warmup=1, min_iters=3, min_time_s=0.01, max_time_s=2))
    report = json.loads(Path(out["json"]).read_text())
    measured = {(r["target"], r["precision"]): r for r in report["results"] if r["measured"]}
    assert {("pytorch", "fp32"), ("onnxruntime", "fp32")} <= set(measured) and not out["failed"]
    for row in measured.values():
        assert set(row["networks"]) == {"detector", "recognizer"} and row["networks"]["recognizer"]["input_size"] == [3, 32, 128]
        assert all(n["p50_ms"] > 0 for n in row["networks"].values()) and row["latency_ms"]["p50"] > 0
        assert set(row["stages_ms"]) == {"detection_ms", "cropping_ms", "recognition_ms"}
        assert {"e2e_hmean", "det_hmean", "word_accuracy", "cer"} == set(row["scores"])
    assert measured[("onnxruntime", "fp32")]["accuracy"] == pytest.approx(measured[("pytorch", "fp32")]["accuracy"])
    assert report["cost"]["macs"] > 0 and "Per network and per page" in Path(out["html"]).read_text()
