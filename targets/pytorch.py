"""`pytorch`: eager FP32, the reference every other target is held to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from factory.models import build_architecture
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner


@TARGETS.register("pytorch")
class PyTorchTarget:
    name = "pytorch"
    capabilities = Capabilities(precisions=("fp32",), devices=("cpu", "cuda"), dynamic_batch=True, dynamic_shape=True,
                                notes="Eager PyTorch state dict; the FP32 baseline for parity and accuracy.")

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        torch.save(model.state_dict(), out / "model.pt")
        return ExportResult(files=["model.pt"], tool_versions={"torch": torch.__version__})

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        model = build_architecture(meta)
        model.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
        return eager_runner(model.eval())


def eager_runner(model: nn.Module) -> Runner:
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return run
