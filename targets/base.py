"""The target protocol: capabilities as data, `export` and `load`, found through `TARGETS`.

A target imports its SDK inside its own module, lazily (in `export` / `load`), so the registry can
list every target and say exactly what is missing without importing any runtime.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from torch import nn

from factory.registry import Registry

PRECISIONS = ("fp32", "fp16", "int8")

# A runner maps a normalised NCHW float32 batch to the model's raw outputs (logits), as NumPy.
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Capabilities:
    precisions: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    export_modules: tuple[str, ...] = ()  # Python modules needed to export
    runtime_modules: tuple[str, ...] = ()  # Python modules needed to run the artifact here
    runs_here: bool = True  # False where the runtime cannot exist on this OS (Core ML on Linux)
    dynamic_batch: bool = False
    dynamic_shape: bool = False  # takes inputs whose height and width vary (a network's meta["dynamic_axes"])
    int8_calibrated: bool = True  # False: INT8 is weight-only and needs no calibration images
    min_size: int = 16
    max_size: int = 2048
    size_multiple: int = 1
    notes: str = ""

    def missing_modules(self, kind: str = "export") -> list[str]:
        mods = self.export_modules if kind == "export" else self.runtime_modules
        return [m for m in mods if importlib.util.find_spec(m.split(".")[0]) is None or not _importable(m)]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Calibration:
    """Preprocessed calibration images (NCHW float32) and what the selection reported."""

    inputs: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportRequest:
    precision: str = "fp32"
    device: str = "cpu"
    dynamic_batch: bool = False
    calibration: Calibration | None = None
    options: dict[str, Any] = field(default_factory=dict)  # target-specific (e.g. ignored scopes)


@dataclass
class ExportResult:
    files: list[str]  # relative to the artifact folder; the first one is the model file
    tool_versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runnable: bool = True  # False: validated but cannot be run here (reason in notes)
    proxy: str = ""  # non-empty: checked here with this other runtime (e.g. "onnxruntime" for web), so its
    #                  speed here says nothing about the target's and the INT8 speed check is skipped


class Target(Protocol):
    """A runtime on a class of hardware. Optional attribute `int8_strategies`: the INT8 strategies
    (`compression.ptq` names) the export driver tries in order until the accuracy budget holds."""

    name: str
    capabilities: Capabilities

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        """Write the artifact for `model` (eval mode, CPU, FP32) into folder `out`."""

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        """A runner over the artifact in `out` (as written by `export`)."""


TARGETS: Registry[Target] = Registry("target")
