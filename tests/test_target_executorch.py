"""The `executorch` target: .pte lowered to XNNPACK, run with the ExecuTorch Python runtime.

Round trips at tiny input sizes (fp32 parity, int8 agreement and size) and the export driver end to
end on the trained tiny model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("executorch.runtime", reason="the executorch target needs the `executorch` package "
                                                 "(ExecuTorch Python runtime with XNNPACK): pip install executorch")
pytest.importorskip("torchao", reason="INT8 for the executorch target needs `torchao` (PT2E quantization), "
                                      "which executorch installs")

import targets.executorch  # noqa: E402,F401  (registers the target)
from factory.errors import UnsupportedSpecError  # noqa: E402
from factory.tasks.classification import build_model, postprocessing_spec, preprocessing_spec  # noqa: E402
from targets import api  # noqa: E402
from targets.base import TARGETS, Calibration, ExportRequest  # noqa: E402

CLASSES = ["circle", "square", "triangle"]
SIZE = 32


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, dict, np.ndarray, np.ndarray]:
    """A seeded tiny_cls in eval mode, its metadata, and its PyTorch logits on 32 seeded inputs."""
    torch.manual_seed(0)
    model = build_model("tiny_cls", len(CLASSES)).eval()
    meta = {"arch": "tiny_cls", "num_classes": len(CLASSES), "input_size": [3, SIZE, SIZE], "classes": CLASSES,
            "task": "classification", "preprocessing": preprocessing_spec(SIZE),
            "postprocessing": postprocessing_spec(CLASSES)}
    x = np.random.default_rng(0).standard_normal((32, 3, SIZE, SIZE)).astype(np.float32)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    return model, meta, x, reference


def export_and_load(model, meta, out: Path, request: ExportRequest):
    target = TARGETS.get("executorch")()
    out.mkdir()
    result = target.export(model, meta, out, request)
    assert result.files == ["model.pte"] and (out / "model.pte").stat().st_size > 0
    assert result.runnable and not result.proxy
    return result, target.load(out, meta, "cpu")


def test_capabilities_are_data():
    caps = TARGETS.get("executorch").capabilities
    assert caps.precisions == ("fp32", "int8") and caps.devices == ("cpu",) and not caps.dynamic_batch
    assert caps.missing_modules("export") == [] and caps.missing_modules("runtime") == []


def test_fp32_matches_pytorch(tiny, tmp_path):
    model, meta, x, reference = tiny
    result, runner = export_and_load(model, meta, tmp_path / "fp32", ExportRequest("fp32"))
    outputs = runner(x)
    assert outputs.shape == reference.shape
    assert np.abs(outputs - reference).max() < 1e-4
    assert result.tool_versions["executorch"] and "every compute node delegated" in result.notes[-1]


# slow: the default run drives ExecuTorch through the driver in test_targets (contract, INT8 drift) and test_detection_export
@pytest.mark.slow
def test_int8_agrees_and_is_smaller(tiny, tmp_path):
    model, meta, x, reference = tiny
    calibration = np.random.default_rng(1).standard_normal((64, 3, SIZE, SIZE)).astype(np.float32)
    request = ExportRequest("int8", calibration=Calibration(calibration), options={"strategy": "ptq"})
    result, runner = export_and_load(model, meta, tmp_path / "int8", request)
    outputs = runner(x)
    assert (outputs.argmax(1) == reference.argmax(1)).mean() >= 0.9
    assert "torchao" in result.tool_versions and "64 calibration images" in result.notes[0]
    export_and_load(model, meta, tmp_path / "fp32", ExportRequest("fp32"))
    int8_size, fp32_size = ((tmp_path / p / "model.pte").stat().st_size for p in ("int8", "fp32"))
    assert int8_size < 0.5 * fp32_size  # 25k parameters: ~100 KB fp32 -> ~33 KB int8


def test_int8_without_calibration_says_how_to_fix(tiny, tmp_path):
    model, meta, _, _ = tiny
    with pytest.raises(UnsupportedSpecError, match="calibration images") as err:
        TARGETS.get("executorch")().export(model, meta, tmp_path, ExportRequest("int8"))
    assert "targets.api.export" in err.value.fix


# slow: the default run drives ExecuTorch through the driver in test_targets (contract, INT8 drift) and test_detection_export
@pytest.mark.slow
def test_driver_end_to_end(trained_home):
    fp32 = api.export("shapes-tiny", "executorch", precision="fp32", home=trained_home)
    assert fp32["parity"]["passed"] and fp32["runnable_here"]
    assert Path(fp32["path"], "model.pte").is_file()
    int8 = api.export("shapes-tiny", "executorch", precision="int8", keep_if_slower=True, home=trained_home)
    assert int8["parity"]["top1_agreement"] >= 0.9 and int8["compression"]["strategy"] == "ptq"
    assert int8["size_mb"] < fp32["size_mb"]
    assert int8["compression"]["speed"]["int8_ms"] > 0
