"""INT8 post-training quantization with NNCF, for OpenVINO IR and for QDQ ONNX (onnxruntime,
tensorrt, web). Never ORT dynamic quantization: it is many times slower for CNNs on CPUs.

Strategies, tried in this order by the budget search (`compression.budget`):
  ptq               NNCF PTQ, performance preset (symmetric), the fastest INT8 graph
  ptq_mixed         NNCF PTQ, mixed preset (asymmetric activations) with fast-bias-correction off
  accuracy_control  NNCF quantize_with_accuracy_control: reverts the most sensitive layers to
                    FP32 until the validation drop is within the budget (mixed precision)
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from factory.errors import MissingDependencyError
from factory.signal_stack import kept_signal_stack

PTQ_STRATEGIES = ("ptq", "ptq_mixed", "accuracy_control")


def nncf_module() -> Any:
    """NNCF, imported with its and torch's noisy logs quieted; MissingDependencyError when absent."""
    # torch's extension loader logs a CUDA warning when NNCF probes it; NNCF's INFO lines are noise
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf

        nncf.set_log_level(logging.WARNING)
    except ImportError as exc:
        raise MissingDependencyError(f"INT8 quantization needs NNCF ({exc}).",
                                     fix="Run scripts/setup (installs nncf), or export at fp32.") from None
    return nncf


def _dataset(inputs: np.ndarray | list[np.ndarray], input_name: str | None) -> Any:
    nncf = nncf_module()
    items = [np.asarray(x)[None] for x in inputs]  # one image each: a batch array, or a list of different sizes
    return nncf.Dataset(items, (lambda x: {input_name: x}) if input_name else (lambda x: x))


Score = Callable[[np.ndarray, list], float]  # (raw outputs [N, ...], ground truth per image) -> metric in [0, 1]


def top1_accuracy(outputs: np.ndarray, truth: list) -> float:
    """The default Score: top-1 accuracy of logits against label indices."""
    return float((np.asarray(outputs).argmax(1) == np.asarray(truth)).mean())


@kept_signal_stack()  # NNCF infers with ov.Cores of its own, whose CPU plugins move the signal stack
def quantize(model: Any, calibration: np.ndarray, *, strategy: str = "ptq", input_name: str | None = None,
             validation: tuple[np.ndarray, Any] | None = None, max_drop: float = 1.0,
             validate: Callable[[Any, np.ndarray, list], float] | None = None) -> Any:
    """Quantize an OpenVINO `ov.Model` or an `onnx.ModelProto` to INT8 with NNCF.

    `input_name`: the ONNX input name (ONNX models take a dict). `validation` (inputs, ground truth
    per image) + `validate` (model, inputs, ground truth list -> metric in [0, 1]) are needed for
    `accuracy_control`; `max_drop` is in points of that metric (1.0 = one percentage point).
    """
    nncf = nncf_module()
    calib = _dataset(calibration, input_name)
    common = {"subset_size": len(calibration)}
    if strategy == "ptq":
        return nncf.quantize(model, calib, preset=nncf.QuantizationPreset.PERFORMANCE, **common)
    if strategy == "ptq_mixed":
        return nncf.quantize(model, calib, preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=False, **common)
    if strategy == "accuracy_control":
        if validation is None or validate is None:
            raise ValueError("accuracy_control needs validation data and a validate function")
        x, y = validation
        pairs = [(x[i:i + 1], y[i]) for i in range(len(x))]
        val_ds = nncf.Dataset(pairs, (lambda p: {input_name: p[0]}) if input_name else (lambda p: p[0]))

        def validation_fn(compiled: Any, data: Any) -> float:
            xs = np.concatenate([p[0] for p in data])
            return validate(compiled, xs, [p[1] for p in data])

        return nncf.quantize_with_accuracy_control(
            model, calib, val_ds, validation_fn=validation_fn, max_drop=max_drop / 100.0,
            drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.MIXED, **common)
    raise ValueError(f"unknown strategy {strategy!r}")
