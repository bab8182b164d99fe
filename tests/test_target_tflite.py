"""The `tflite` target: a LiteRT flatbuffer by litert-torch, run with ai-edge-litert's interpreter.

Round trips at tiny input sizes (fp32 parity, static full-integer int8 agreement and size) and the
export driver end to end on the trained tiny model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="the tflite target converts with `litert-torch`; run scripts/setup")
pytest.importorskip("ai_edge_litert.interpreter", reason="the tflite target runs with `ai-edge-litert`; scripts/setup")
pytest.importorskip("ai_edge_quantizer", reason="INT8 for the tflite target needs `ai-edge-quantizer`; scripts/setup")

import targets.tflite  # noqa: E402,F401  (registers the target)
from factory.tasks.classification import build_model, postprocessing_spec, preprocessing_spec  # noqa: E402
from targets import api  # noqa: E402
from targets.base import TARGETS, Calibration, ExportRequest  # noqa: E402

CLASSES = ["circle", "square", "triangle"]
SIZE = 32


def images(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """Seeded normalised NCHW images that differ in colour as well as in noise: on white noise alone
    a random CNN gives one class for every image, and top-1 agreement would prove nothing."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3, 1, 1)) + 0.5 * rng.standard_normal((n, 3, size, size))).astype(np.float32)


def seeded_model(arch: str, size: int) -> tuple[torch.nn.Module, dict]:
    """A seeded `arch` with batch-norm statistics from `images` and zero head bias, so that its
    predictions vary with the input; eval mode, with the metadata a model version carries."""
    torch.manual_seed(0)
    model = build_model(arch, len(CLASSES)).train()
    with torch.no_grad():
        model(torch.from_numpy(images(64, seed=2, size=size)))
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
                layer.bias.zero_()
    meta = {"arch": arch, "num_classes": len(CLASSES), "input_size": [3, size, size], "classes": CLASSES,
            "task": "classification", "preprocessing": preprocessing_spec(size),
            "postprocessing": postprocessing_spec(CLASSES)}
    return model.eval(), meta


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, dict, np.ndarray, np.ndarray]:
    """The seeded tiny_cls, its metadata, 32 inputs and its PyTorch logits on them."""
    model, meta = seeded_model("tiny_cls", SIZE)
    x = images(32, seed=0)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    assert len(set(reference.argmax(1))) > 1, "the test model should not predict one class for everything"
    return model, meta, x, reference


def export_and_load(model, meta, out: Path, request: ExportRequest):
    target = TARGETS.get("tflite")()
    out.mkdir()
    result = target.export(model, meta, out, request)
    assert result.files == ["model.tflite"] and (out / "model.tflite").stat().st_size > 0
    assert result.runnable and not result.proxy
    return result, target.load(out, {**meta, "precision": request.precision}, "cpu")


@pytest.fixture(scope="module")
def fp32(tiny, tmp_path_factory):
    model, meta, _, _ = tiny
    out = tmp_path_factory.mktemp("tflite") / "fp32"
    return (out, *export_and_load(model, meta, out, ExportRequest("fp32")))


def test_capabilities_are_data():
    caps = TARGETS.get("tflite").capabilities
    assert caps.precisions == ("fp32", "int8") and caps.devices == ("cpu",) and not caps.dynamic_batch
    assert caps.missing_modules("export") == [] and caps.missing_modules("runtime") == []
    assert TARGETS.get("tflite").int8_strategies == ("ptq", "ptq_ema")


def test_fp32_matches_pytorch(tiny, fp32):
    _, _, x, reference = tiny
    _, result, runner = fp32
    outputs = runner(x)
    assert outputs.shape == reference.shape and outputs.dtype == np.float32
    assert np.abs(outputs - reference).max() < 1e-4
    assert {"litert_torch", "ai_edge_litert", "torch"} <= set(result.tool_versions)
    assert "input: float32 [1x3x32x32] NCHW" in " ".join(result.notes)


@pytest.mark.parametrize("strategy", ["ptq", "ptq_ema"])
def test_int8_is_full_integer_agrees_and_is_smaller(tiny, fp32, tmp_path, strategy):
    model, meta, x, reference = tiny
    request = ExportRequest("int8", calibration=Calibration(images(64, seed=1)), options={"strategy": strategy})
    result, runner = export_and_load(model, meta, tmp_path / "int8", request)
    outputs = runner(x)
    assert outputs.shape == reference.shape and outputs.dtype == np.float32
    assert (outputs.argmax(1) == reference.argmax(1)).mean() >= 0.9
    # dequantised logits, not raw int8 (the max can be larger: logits beyond the calibrated range clip)
    assert np.median(np.abs(outputs - reference)) < 0.05 * np.abs(reference).max()
    notes = " ".join(result.notes)
    assert f"{strategy}: " in notes and "64 calibration images" in notes and "input: int8 [1x3x32x32] NCHW" in notes
    assert "output: int8 [1x3] logits" in notes and "full-integer: no float tensors" in notes
    assert "ai_edge_quantizer" in result.tool_versions
    int8_size = (tmp_path / "int8" / "model.tflite").stat().st_size
    fp32_size = (fp32[0] / "model.tflite").stat().st_size
    assert int8_size < 0.5 * fp32_size  # 25k parameters: ~100 KB fp32 -> ~35 KB int8


def test_int8_without_calibration_or_with_an_unknown_strategy_says_how_to_fix(tiny, tmp_path):
    model, meta, _, _ = tiny
    target = TARGETS.get("tflite")()
    with pytest.raises(Exception, match="calibration images") as err:
        target.export(model, meta, tmp_path, ExportRequest("int8"))
    assert err.value.code == "UNSUPPORTED_SPEC" and err.value.fix
    request = ExportRequest("int8", calibration=Calibration(images(4, seed=1)), options={"strategy": "ptq_mixed"})
    with pytest.raises(Exception, match="no INT8 strategy 'ptq_mixed'") as err:
        target.export(model, meta, tmp_path, request)
    assert "ptq, ptq_ema" in err.value.fix


@pytest.mark.slow
def test_int8_mobilenet_v3_small_is_full_integer_and_a_third_of_fp32(tmp_path):
    """A model with real weight mass: ~6.2 MB fp32 -> ~1.9 MB int8 at 64 px (about 35 s on 2 cores)."""
    model, meta = seeded_model("mobilenet_v3_small", 64)
    x = images(8, seed=0, size=64)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    fp32_result, fp32_runner = export_and_load(model, meta, tmp_path / "fp32", ExportRequest("fp32"))
    assert np.abs(fp32_runner(x) - reference).max() < 1e-3 * max(1.0, np.abs(reference).max())
    request = ExportRequest("int8", calibration=Calibration(images(32, seed=1, size=64)))
    result, runner = export_and_load(model, meta, tmp_path / "int8", request)
    assert np.median(np.abs(runner(x) - reference)) < 0.05 * np.abs(reference).max()
    assert "full-integer: no float tensors" in result.notes
    sizes = [(tmp_path / p / "model.tflite").stat().st_size for p in ("fp32", "int8")]
    assert sizes[1] < 0.35 * sizes[0]


# slow: the default run drives LiteRT through the driver in test_targets (contract, INT8 drift) and test_detection_export
@pytest.mark.slow
def test_driver_end_to_end(trained_home):
    fp32 = api.export("shapes-tiny", "tflite", precision="fp32", home=trained_home)
    assert fp32["parity"]["passed"] and fp32["runnable_here"] and fp32["parity"]["max_abs_diff"] < 1e-4
    assert Path(fp32["path"], "model.tflite").is_file()
    int8 = api.export("shapes-tiny", "tflite", precision="int8", keep_if_slower=True, home=trained_home)
    assert int8["parity"]["passed"] and int8["parity"]["top1_agreement"] >= 0.9
    assert int8["compression"]["strategy"] == "ptq" and int8["compression"]["speed"]["int8_ms"] > 0
    assert int8["size_mb"] < 0.5 * fp32["size_mb"]
    assert any("full-integer" in note for note in int8["notes"])
