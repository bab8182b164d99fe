"""The ncnn and Core ML targets: ncnn parity against PyTorch (tiny_cls fp32 / fp16, MobileNetV3-Small
with its hardswish / squeeze-excite blocks), Core ML spec validation at every precision (it cannot
run on Linux), and both through the export driver on the trained tiny workspace."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

import targets.coreml
import targets.ncnn  # registers the target (targets/__init__ does not import it yet)
from factory.errors import ExportError, UnsupportedSpecError
from factory.tasks.classification import build_model, postprocessing_spec, preprocessing_spec
from targets import api
from targets.base import TARGETS, ExportRequest
from tests.conftest import copy_home

CLASSES = ["circle", "square", "triangle"]
MODEL = "shapes-tiny:v1"


def meta_for(arch: str, size: int) -> dict:
    """Model metadata as factory.models.register_model_version writes it (the keys targets read)."""
    return {"name": f"{arch}-test", "task": "classification", "arch": arch, "classes": CLASSES,
            "num_classes": len(CLASSES), "input_size": [3, size, size], "preprocessing": preprocessing_spec(size),
            "postprocessing": postprocessing_spec(CLASSES), "weights": "weights.pt"}


def seeded_model(arch: str, logit_gain: float = 1.0) -> torch.nn.Module:
    """A seeded model with non-trivial BatchNorm statistics (fresh ones fold to the identity), its classifier
    scaled by `logit_gain` so that untrained logits are not all near zero."""
    torch.manual_seed(0)
    model = build_model(arch, len(CLASSES))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(logit_gain)
    return model.eval()


def images(size: int, n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


# -- ncnn ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ncnn_target():
    pytest.importorskip("pnnx", reason="the ncnn target converts with pnnx (pip install pnnx)")
    pytest.importorskip("ncnn", reason="the ncnn target runs with the ncnn Python package (pip install ncnn)")
    return TARGETS.get("ncnn")()


def ncnn_parity(target, arch: str, size: int, precision: str, tmp_path: Path, gain: float = 1.0) -> tuple[float, float]:
    model, meta, x = seeded_model(arch, gain), meta_for(arch, size), images(size)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    result = target.export(model, meta, tmp_path, ExportRequest(precision))
    assert result.runnable and result.files == ["model.ncnn.param", "model.ncnn.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(result.files)  # pnnx's own files are gone
    assert {"pnnx", "ncnn", "torch"} <= set(result.tool_versions)
    outputs = target.load(tmp_path, {**meta, "precision": precision})(x)
    assert outputs.shape == (len(x), len(CLASSES)) and outputs.dtype == np.float32
    assert (outputs.argmax(1) == reference.argmax(1)).all()
    return float(np.abs(outputs - reference).max()), float(np.abs(reference).max())


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_ncnn_tiny_cls_parity(ncnn_target, precision: str, tmp_path: Path):
    diff, scale = ncnn_parity(ncnn_target, "tiny_cls", 32, precision, tmp_path, gain=10.0)
    assert scale > 1.0  # the check below is not vacuous
    assert diff <= (1e-4 if precision == "fp32" else 2e-2 * scale)
    param = (tmp_path / "model.ncnn.param").read_text().split()
    assert param[0] == "7767517" and "input" in param and "logits" in param and "in0" not in param


def test_ncnn_mobilenet_v3_small_parity(ncnn_target, tmp_path: Path):
    diff, scale = ncnn_parity(ncnn_target, "mobilenet_v3_small", 64, "fp32", tmp_path, gain=300.0)
    assert scale > 1.0 and diff <= 1e-4
    layers = {line.split()[0] for line in (tmp_path / "model.ncnn.param").read_text().splitlines()[2:]}
    assert {"HardSwish", "HardSigmoid", "ConvolutionDepthWise", "BinaryOp"} <= layers  # hardswish and SE blocks


def test_ncnn_conversion_failure_is_an_export_error(ncnn_target, tmp_path: Path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "model.pt").write_bytes(b"not TorchScript")
    with pytest.raises(ExportError, match="pnnx could not convert tiny_cls"):
        targets.ncnn.run_pnnx(tmp_path / "work" / "model.pt", meta_for("tiny_cls", 32), tmp_path, fp16=False)


def test_ncnn_capabilities_say_why_no_int8():
    caps = TARGETS.get("ncnn").capabilities
    assert caps.precisions == ("fp32", "fp16") and caps.devices == ("cpu",)
    assert "ncnn2int8" in caps.notes


def test_ncnn_fp16_note_is_honest(ncnn_target, tmp_path: Path):
    import ncnn

    result = ncnn_target.export(seeded_model("tiny_cls"), meta_for("tiny_cls", 32), tmp_path, ExportRequest("fp16"))
    note = result.notes[-1]
    assert note.startswith("fp16 weights")
    assert ("computed in fp32" in note) != bool(ncnn.cpu_support_arm_asimdhp())


# -- Core ML ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coreml_target():
    pytest.importorskip("coremltools", reason="the coreml target converts with coremltools (pip install coremltools)")
    return TARGETS.get("coreml")()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_coreml_spec_is_validated(coreml_target, precision: str, tmp_path: Path):
    meta = meta_for("tiny_cls", 32)
    result = coreml_target.export(seeded_model("tiny_cls"), meta, tmp_path, ExportRequest(precision, "apple-ane"))
    assert result.files == ["model.mlpackage"] and (tmp_path / "model.mlpackage" / "Manifest.json").is_file()
    assert result.tool_versions["coremltools"] and result.tool_versions["deployment_target"] == "iOS16"
    summary = targets.coreml.spec_summary(tmp_path / "model.mlpackage")
    assert summary["type"] == "mlProgram" and summary["spec_version"] >= 7
    assert summary["inputs"] == [{"name": "input", "shape": [1, 3, 32, 32], "dtype": "FLOAT32"}]
    assert [(o["name"], o["dtype"]) for o in summary["outputs"]] == [("logits", "FLOAT32")]
    assert summary["ops"]["conv"] == 3 and summary["ops"]["linear"] == 1
    compute = "FLOAT32" if precision == "fp32" else "FLOAT16"
    assert set(summary["compute_dtypes"]) == {compute}
    if precision == "int8":  # weight-only: the two conv weights over 2048 elements are INT8, the rest fp16
        assert summary["weights"] == {"INT8": 2, "FLOAT16": 2} and summary["ops"]["constexpr_affine_dequantize"] == 2
        assert any("weight-only" in note for note in result.notes)
    else:
        assert summary["weights"] == {compute: 4}
    if platform.system() != "Darwin":
        assert not result.runnable
        assert result.notes[0].startswith(f"Core ML cannot run on {platform.system()}: spec validated (mlProgram")
        assert "input 'input' float32 [1, 3, 32, 32]" in result.notes[0] and "Apple device" in result.notes[0]
        with pytest.raises(UnsupportedSpecError, match="Core ML cannot run on"):
            coreml_target.load(tmp_path, {**meta, "precision": precision})


def test_coreml_validation_catches_a_wrong_spec(coreml_target, tmp_path: Path):
    """The spec checks compare against the request, so a package for another shape / precision fails them."""
    coreml_target.export(seeded_model("tiny_cls"), meta_for("tiny_cls", 32), tmp_path, ExportRequest("fp16"))
    summary = targets.coreml.spec_summary(tmp_path / "model.mlpackage")
    assert targets.coreml.spec_problems(summary, meta_for("tiny_cls", 32), "fp16") == []
    wrong_size = targets.coreml.spec_problems(summary, meta_for("tiny_cls", 64), "fp16")
    assert len(wrong_size) == 1 and "inputs" in wrong_size[0]
    as_fp32 = targets.coreml.spec_problems(summary, meta_for("tiny_cls", 32), "fp32")
    assert any("compute ops" in p for p in as_fp32) and any("weight tensors" in p for p in as_fp32)
    as_int8 = targets.coreml.spec_problems(summary, meta_for("tiny_cls", 32), "int8")
    assert len(as_int8) == 1 and "INT8" in as_int8[0]


def test_coreml_capabilities():
    caps = TARGETS.get("coreml").capabilities
    assert caps.devices == ("apple-ane", "apple-gpu", "apple-cpu") and caps.precisions == ("fp32", "fp16", "int8")
    assert caps.runs_here is (platform.system() == "Darwin")


# -- through the export driver ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the trained workspace, so these artifacts stay out of other modules' tests."""
    dest = tmp_path_factory.mktemp("ncnn_coreml") / "ws"
    copy_home(trained_home, dest)
    return dest


def test_export_ncnn_end_to_end(ncnn_target, home: Path):
    out = api.export(MODEL, "ncnn", home=home)
    folder = Path(out["path"])
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["files"] == ["model.ncnn.param", "model.ncnn.bin"] and meta["runnable_here"]
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.ncnn.bin", "model.ncnn.param"]
    assert meta["parity"]["passed"] and meta["parity"]["max_abs_diff"] <= 1e-4
    assert meta["accuracy"] == pytest.approx(meta["reference_accuracy"])
    assert meta["tool_versions"]["pnnx"] and meta["device"] == "cpu"
    runner = ncnn_target.load(folder, meta, meta["device"])  # metadata.json is enough to run it
    assert runner(np.zeros([1, *meta["input_shape"][1:]], np.float32)).shape == (1, len(meta["classes"]))


def test_export_coreml_end_to_end_is_published_not_run(coreml_target, home: Path):
    if platform.system() == "Darwin":
        pytest.skip("on macOS the Core ML artifact runs, so parity is measured; this checks the Linux path")
    out = api.export(MODEL, "coreml", precision="int8", device="apple-ane", calibration_size=20, home=home)
    meta = json.loads((Path(out["path"]) / "metadata.json").read_text())
    assert meta["files"] == ["model.mlpackage"] and meta["device"] == "apple-ane" and not meta["runnable_here"]
    assert meta["parity"]["checked"] is False and "spec validated" in meta["parity"]["reason"]
    assert meta["accuracy"] is None and meta["compression"]["strategy"] == "weight_only"
    assert any(r["target"] == "coreml" for r in api.list_artifacts(MODEL, home=home))


def test_coreml_published_size_counts_the_package(coreml_target, home: Path):
    out = api.export(MODEL, "coreml", precision="fp32", device="apple-ane", home=home)
    package = Path(out["path"]) / "model.mlpackage"
    contents = sum(p.stat().st_size for p in package.rglob("*") if p.is_file()) / 1e6
    assert out["size_mb"] == pytest.approx(contents, abs=1e-3)
