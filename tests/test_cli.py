"""The CLI end to end in a temporary workspace: every command's --json contract and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_home, run_cli


def test_cli_import_train_eval_list(tmp_path: Path, shapes_dir: Path):
    home = tmp_path / "ws"
    _, out, _ = run_cli("dataset", "import", str(shapes_dir), "--name", "shapes", home=home)
    assert {"dataset", "version", "task", "num_images", "classes", "splits", "issues"} <= set(out)
    assert out["version"] == 1 and out["num_images"] == 90 and out["format"] == "folder_per_class"
    assert out["splits"] == {"train": 72, "val": 9, "test": 9}

    _, inspected, _ = run_cli("dataset", "inspect", "shapes", home=home)
    assert inspected["stats"]["images_per_class"] == {"circle": 30, "square": 30, "triangle": 30}
    _, listed, _ = run_cli("dataset", "list", home=home)
    assert [(d["dataset"], d["version"]) for d in listed["datasets"]] == [("shapes", 1)]

    _, trained, _ = run_cli("train", "--dataset", "shapes", "--model", "tiny_cls", "--epochs", "2", "--name", "cli-m",
                            home=home)
    assert {"model", "version", "run", "metrics"} <= set(trained)
    assert trained["model"] == "cli-m" and trained["version"] == 1 and 0 <= trained["metrics"]["accuracy"] <= 1

    _, evaluated, _ = run_cli("eval", "cli-m:v1", "--split", "test", home=home)
    assert "accuracy" in evaluated["metrics"] and len(evaluated["confusion_matrix"]["matrix"]) == 3
    _, models, _ = run_cli("models", "list", home=home)
    assert [m["ref"] for m in models["models"]] == ["cli-m:v1"]
    _, runs, _ = run_cli("runs", "list", home=home)
    assert runs["runs"][0]["status"] == "completed"


def test_cli_human_output_names_the_detected_format(tmp_path: Path, shapes_dir: Path):
    env = {**os.environ, "EDGEFACTORY_HOME": str(tmp_path / "ws"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "dataset", "import", str(shapes_dir), "--name", "s",
                           "--quiet"], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    assert "format: folder_per_class (detected)" in proc.stdout


@pytest.mark.slow  # three CLI processes (20 s); the API's failed imports that change nothing are in test_datasets
def test_cli_failed_import_exits_non_zero_and_changes_nothing(tmp_path: Path, shapes_dir: Path):
    home = tmp_path / "ws"
    run_cli("dataset", "import", str(shapes_dir), "--name", "shapes", home=home)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    code, out, err = run_cli("dataset", "import", str(bad), "--name", "shapes", home=home, check=False)
    assert code != 0
    assert out["error"]["code"] in ("NOT_AN_ARCHIVE", "CORRUPT_ARCHIVE") and "Fix:" in err
    one_class = tmp_path / "one.zip"
    with zipfile.ZipFile(one_class, "w") as zf:
        for p in sorted((shapes_dir / "circle").iterdir()):
            zf.write(p, f"circle/{p.name}")
    code, out, err = run_cli("dataset", "import", str(one_class), "--name", "shapes", home=home, check=False)
    assert code == 1 and out["error"]["code"] == "TOO_FEW_CLASSES" and "at least 2 classes" in err
    _, listed, _ = run_cli("dataset", "list", home=home)
    assert [(d["dataset"], d["version"]) for d in listed["datasets"]] == [("shapes", 1)]
    assert sorted(p.name for p in (home / "datasets" / "shapes").iterdir()) == ["v1"]


def test_cli_errors_are_plain(tmp_path: Path):
    home = tmp_path / "ws"
    code, out, err = run_cli("eval", "nothing:v1", home=home, check=False)
    assert code == 1 and out["error"]["code"] == "NOT_FOUND" and "edgefactory models list" in err
    code, out, err = run_cli("train", "--dataset", "x", "--model", "mobilenet_v3_smal", home=home, check=False)
    assert code == 1 and "No dataset named 'x'" in err


@pytest.mark.slow  # a CLI process per layout; the layouts themselves are in test_detection_datasets.py
def test_cli_sample_data_in_every_layout_imports(tmp_path: Path):
    home = tmp_path / "ws"
    for layout in ("folder_per_class", "split_folders", "kuplus_txfl", "csv"):
        dest = tmp_path / layout
        _, out, _ = run_cli("dataset", "sample", "shapes", str(dest), "--layout", layout, "--per-class", "20", home=home)
        assert out["files"] >= 60
        _, imported, _ = run_cli("dataset", "import", str(dest), "--name", layout.replace("_", "-"), home=home)
        assert imported["format"] == layout and imported["num_images"] == 60
    code, out, err = run_cli("dataset", "sample", "shapes", str(tmp_path / "csv"), home=home, check=False)
    assert code == 1 and "not empty" in err


def test_cli_targets_export_and_compress(trained_home: Path, tmp_path: Path):
    
    home = tmp_path / "ws"
    copy_home(trained_home, home)
    _, listed, _ = run_cli("targets", home=home)
    names = {t["target"] for t in listed["targets"]}
    assert {"pytorch", "onnxruntime", "openvino", "tensorrt", "tflite", "executorch", "ncnn", "coreml", "web"} <= names
    # the CLI plumbing is under test here, not the budget (the drift test in test_targets bounds that)
    _, out, _ = run_cli("export", "shapes-tiny:v1", "--target", "openvino", "--precision", "int8", "--keep-if-slower",
                        "--calibration-size", "20", "--strategies", "ptq", "--max-drop", "100", home=home)
    assert {"artifact", "path", "size_mb", "accuracy", "reference_accuracy", "parity", "compression"} <= set(out)
    assert out["artifact"] == "shapes-tiny:v1/openvino/int8" and out["compression"]["strategy"] == "ptq"
    code, err_out, err = run_cli("export", "shapes-tiny:v1", "--target", "onnxruntime", "--precision", "fp16",
                                 home=home, check=False)
    assert code == 1 and err_out["error"]["code"] == "UNSUPPORTED_SPEC" and "does not support fp16" in err
    _, comp, _ = run_cli("compress", "shapes-tiny:v1", "--target", "onnxruntime", "--prune", "0.3",
                         "--finetune-epochs", "1", "--max-drop", "100", home=home)
    assert comp["version"] == 2 and comp["pruning"]["mac_ratio"] >= 1.4 and comp["artifact"] == "shapes-tiny:v2/onnxruntime/fp32"
