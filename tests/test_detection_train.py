"""A detector end to end on synthetic scenes: import, train (tiny_det, engine with early stopping on
val mAP@0.5), register, evaluate with COCO metrics, and `eval --save-predictions` writing a COCO
results list in the original images' pixels that pycocotools scores exactly as the factory does."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from factory import api
from tests.conftest import copy_home, run_cli


def test_training_registers_a_detector_with_coco_metrics(det_home: Path):
    (model,) = api.list_models(home=det_home)
    assert model["task"] == "detection" and model["arch"] == "tiny_det"
    metrics = model["metrics"]
    assert 0 < metrics["map"] <= metrics["map50"] <= 1 and set(metrics["by_size"]) == {"small", "medium", "large"}
    assert set(metrics["per_class"]) == {"circle", "square", "triangle"} and metrics["epochs_run"] >= 1
    shown = api.show_model(model["ref"], home=det_home)
    assert shown["preprocessing"]["resize_mode"] == "letterbox" and shown["postprocessing"]["type"] == "fcos"


def test_eval_saves_coco_predictions_that_pycocotools_scores_the_same(det_home: Path, tmp_path: Path):
    pytest.importorskip("pycocotools", reason="pycocotools is a test dependency (scripts/setup installs it)")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out_file = tmp_path / "predictions.json"
    code, out, err = run_cli("eval", "scenes-tiny-det:v1", "--split", "test", "--save-predictions", str(out_file), home=det_home)
    assert code == 0, err
    assert {"map50", "map"} <= set(out["metrics"]) and len(out["images"]) == 6
    predictions = json.loads(out_file.read_text())
    assert predictions and {"file_name", "category_name", "bbox", "score"} == set(predictions[0])
    # ground truth of the same images, in original pixels, from the dataset's manifest
    from factory.api import session
    from factory.refs import dataset_row_for

    with session(det_home) as (ws, catalog):
        row = dataset_row_for(catalog, "scenes")
    manifest = [m for m in json.loads((ws.home / row["path"] / "manifest.json").read_text()) if m["split"] == "test"]
    ids = {m["source"]: i + 1 for i, m in enumerate(manifest)}
    cats = {c: i + 1 for i, c in enumerate(row["classes"])}
    coco = COCO()
    coco.dataset = {"images": [{"id": ids[m["source"]], "width": m["width"], "height": m["height"]} for m in manifest],
                    "categories": [{"id": i, "name": c} for c, i in cats.items()],
                    "annotations": [{"id": n + 1, "image_id": ids[m["source"]], "category_id": cats[b["label"]], "bbox": b["bbox"],
                                     "area": b["bbox"][2] * b["bbox"][3], "iscrowd": 0}
                                    for n, (m, b) in enumerate((m, b) for m in manifest for b in m["boxes"])]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes([{"image_id": ids[p["file_name"]], "category_id": cats[p["category_name"]],
                                            "bbox": p["bbox"], "score": p["score"]} for p in predictions]), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # the factory scores in letterbox pixels, pycocotools here in original pixels: IoU is scale-free, both clip
    # the boxes to the image, and the saved boxes are rounded to 1/1000 px
    assert out["metrics"]["map50"] == pytest.approx(ev.stats[1], abs=1e-3)
    assert out["metrics"]["map"] == pytest.approx(ev.stats[0], abs=1e-3)


def test_detector_input_size_must_be_a_multiple_of_32(det_home: Path):
    from factory.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of 32"):
        api.train({"dataset": "scenes", "model": "tiny_det", "img_size": 100, "epochs": 1}, home=det_home)


def test_the_cli_speaks_map_for_detectors(det_home: Path, tmp_path: Path):
    import os
    import subprocess
    import sys

    home = tmp_path / "ws"
    copy_home(det_home, home)
    env = {**os.environ, "EDGEFACTORY_HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[1])}

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "factory.cli", *args, "--quiet"], capture_output=True, text=True,
                              env=env, timeout=300, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout
    trained = cli("train", "--dataset", "scenes", "--model", "tiny_det", "--img-size", "64", "--epochs", "1", "--name", "quick")
    assert "test mAP@0.5 " in trained and "mAP@0.5:0.95" in trained
    listed = cli("models", "list")
    assert "mAP@0.5" in listed and "detection" in listed and "scenes-tiny-det:v1" in listed
