"""The one export driver for every target:

check the request against the target's capabilities (one error listing every violation) -> export
(INT8: calibration set, then the target's quantization strategies in order until the accuracy
budget holds) -> parity against PyTorch on fixed inputs -> re-evaluate the exported file on the
test split with its own runtime -> INT8 must be faster than FP32 here -> metadata.json -> publish.

Everything is written in a staging folder and renamed into place at the end, so a failed export
leaves the catalog and any earlier artifact exactly as they were.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from compression.calibration import DEFAULT_SIZE, select_calibration
from compression.qat import quantization_aware_finetune
from factory.config import TrainConfig
from factory.catalog import Catalog
from factory.errors import BudgetError, ExportError, FactoryError, ParityError, UnsupportedSpecError
from factory.evaluation import dataset_row_for, split_entries
from factory.models import load_model, resolve_model
from factory.tasks.inputs import run_batched, split_arrays
from factory.tasks.metrics import classification_metrics
from factory.training.data import ImageTensors
from factory.workspace import Workspace, atomic_write_json
from targets.base import PRECISIONS, TARGETS, Calibration, ExportRequest, Target
from targets.pytorch import eager_runner
from targets.timing import fp32_latency_ms, median_latency_ms

PARITY_IMAGES = 64
# per precision: (max abs logit difference relative to the logit scale, minimum top-1 agreement)
PARITY_TOLERANCE = {"fp32": (1e-3, 1.0), "fp16": (2e-2, 0.95), "int8": (None, 0.9)}

# INT8 counts as faster only when its batch-1 median beats FP32 by more than timing noise
MIN_INT8_SPEEDUP = 1.05

Log = Callable[[str], None]


@dataclass
class ExportPlan:
    target: str
    precision: str = "fp32"
    device: str | None = None  # None: cpu where the target runs on it, else its first device
    max_drop: float = 1.0
    calibration_size: int = DEFAULT_SIZE
    dynamic_batch: bool = False
    keep_if_slower: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def artifact_bytes(folder: Path, files: list[str]) -> int:
    """Bytes on disk of an artifact's files; a listed folder (e.g. model.mlpackage) counts its contents."""
    paths = [folder / n for n in files]
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def default_device(target: Target) -> str:
    """cpu where the target runs on it, else its first device (web: the browser, tensorrt: cuda)."""
    devices = target.capabilities.devices
    return "cpu" if "cpu" in devices else devices[0]


def check_request(target: Target, plan: ExportPlan, meta: dict) -> None:
    """Raise one UnsupportedSpecError listing every way `plan` does not fit `target`."""
    plan.device = plan.device or default_device(target)
    caps = target.capabilities
    problems = []
    if plan.precision not in PRECISIONS:
        problems.append(f"precision {plan.precision!r} is not one of {', '.join(PRECISIONS)}")
    elif plan.precision not in caps.precisions:
        problems.append(f"{target.name} does not support {plan.precision} (it supports {', '.join(caps.precisions)})")
    if plan.device not in caps.devices:
        problems.append(f"{target.name} does not run on device {plan.device!r} (devices: {', '.join(caps.devices)})")
    if plan.dynamic_batch and not caps.dynamic_batch:
        problems.append(f"{target.name} takes static shapes only (leave out --dynamic-batch)")
    missing = caps.missing_modules("export")
    if missing:
        problems.append(f"{target.name} needs the Python package(s) {', '.join(missing)} (run scripts/setup)")
    size = meta["input_size"][-1]
    if not caps.min_size <= size <= caps.max_size or size % caps.size_multiple:
        problems.append(f"input size {size} is outside {target.name}'s range {caps.min_size}-{caps.max_size}"
                        + (f" (multiple of {caps.size_multiple})" if caps.size_multiple > 1 else ""))
    if not 0 <= plan.max_drop <= 100:
        problems.append(f"max drop {plan.max_drop} is not between 0 and 100 points")
    if problems:
        raise UnsupportedSpecError(f"Cannot export to {target.name} at {plan.precision}: " + "; ".join(problems) + ".",
                                   fix="Change the request as listed; `edgefactory targets --json` shows every target's "
                                       "capabilities.", details=problems)


def parity(outputs: np.ndarray, reference: np.ndarray, precision: str) -> dict:
    """Max abs diff and top-1 agreement against the PyTorch FP32 outputs, judged by the precision's tolerance."""
    diff = float(np.abs(outputs.astype(np.float64) - reference).max())
    scale = float(max(1.0, np.abs(reference).max()))
    agreement = float((outputs.argmax(1) == reference.argmax(1)).mean())
    tol_rel, min_agree = PARITY_TOLERANCE[precision]
    ok = agreement >= min_agree and (tol_rel is None or diff <= tol_rel * scale)
    return {"checked": True, "passed": bool(ok), "max_abs_diff": diff, "logit_scale": scale,
            "top1_agreement": agreement, "images": int(len(reference)),
            "tolerance": {"max_abs_diff": None if tol_rel is None else tol_rel * scale, "min_top1_agreement": min_agree}}


@dataclass
class Attempt:
    strategy: str
    folder: Path
    files: list[str]
    result: Any
    parity: dict
    accuracy: float | None
    metrics: dict | None = None
    error: str | None = None

    def summary(self, reference: float) -> dict:
        drop = None if self.accuracy is None else round((reference - self.accuracy) * 100, 3)
        return {"strategy": self.strategy, "accuracy": self.accuracy, "drop_points": drop,
                "parity_passed": self.parity.get("passed"), "top1_agreement": self.parity.get("top1_agreement"),
                "error": self.error}


class ExportJob:
    """One export of one model version to one target at one precision."""

    def __init__(self, ws: Workspace, catalog: Catalog, ref: str, plan: ExportPlan, log: Log | None = None):
        self.ws, self.catalog, self.plan = ws, catalog, plan
        self.log = log or (lambda line: None)
        self.target: Target = TARGETS.get(plan.target)()
        self.row = resolve_model(catalog, ref)
        self.model, self.meta = load_model(ws, self.row)
        check_request(self.target, plan, self.meta)
        self.final = ws.home / "artifacts" / self.row["name"] / f"v{self.row['version']}" / plan.target / plan.precision
        self.staging = self.final.with_name(f".tmp-{plan.precision}-{os.getpid()}-{uuid.uuid4().hex[:6]}")

    def stage(self, name: str, start: float, detail: str = "") -> None:
        self.log(f"{name:<12s} {time.perf_counter() - start:7.2f} s  {detail}".rstrip())

    def load_data(self) -> None:
        ds = dataset_row_for(self.catalog, self.meta["dataset"])
        root, test = split_entries(self.ws, ds, "test")
        _, val = split_entries(self.ws, ds, "val")
        _, train = split_entries(self.ws, ds, "train")
        self.eval_split = "test" if test else "val"
        self.x_test, self.y_test = split_arrays(root, test or val, self.meta)
        self.x_val, self.y_val = split_arrays(root, val or test, self.meta)
        self.root, self.train_entries, self.val_entries = root, train, val
        # fixed parity inputs: test images first, topped up from val and train so that a small
        # dataset's near-tie images cannot decide top-1 agreement on their own
        extra = PARITY_IMAGES - len(self.x_test) - len(self.x_val)
        x_train = split_arrays(root, train[:extra], self.meta)[0] if extra > 0 and train else self.x_test[:0]
        self.parity_inputs = np.concatenate([self.x_test, self.x_val, x_train])[:PARITY_IMAGES]

    def calibration(self) -> Calibration:
        chosen, report = select_calibration(self.train_entries, self.meta["classes"], self.plan.calibration_size)
        inputs, _ = split_arrays(self.root, chosen, self.meta)
        for warning in report["warnings"]:
            self.log(f"warning: {warning}")
        return Calibration(inputs, report)

    def qat_model(self, request: ExportRequest) -> torch.nn.Module:
        """The model fine-tuned with fake quantizers (compression.qat), for strategy `qat`."""
        size, classes = self.meta["input_size"][-1], self.meta["classes"]
        train = ImageTensors(self.root, self.train_entries, classes, size)
        val = ImageTensors(self.root, self.val_entries or self.train_entries, classes, size)
        cfg = TrainConfig(dataset=self.meta["dataset"], model=self.meta["arch"], img_size=size)
        model, record = quantization_aware_finetune(copy.deepcopy(self.model), request.calibration.inputs, train, val,
                                                    self.meta["preprocessing"], cfg, self.staging / "qat-run")
        request.options["qat"] = record
        return model

    def attempt(self, strategy: str, request: ExportRequest) -> Attempt:
        folder = self.staging / strategy
        folder.mkdir(parents=True)
        model = self.qat_model(request) if strategy == "qat" else copy.deepcopy(self.model)
        try:
            result = self.target.export(model, self.meta, folder, request)
        except FactoryError:
            raise
        except Exception as exc:  # converters and quantizers fail in many exception types: name the stage
            raise ExportError(f"{self.plan.target} {self.plan.precision} export ({strategy}) failed: "
                              f"{type(exc).__name__}: {str(exc)[:300]}",
                              fix="Try another precision or target, and report the model and versions as a bug.") from exc
        if not result.runnable:
            return Attempt(strategy, folder, result.files, result, {"checked": False, "reason": "; ".join(result.notes)}, None)
        runner = self.target.load(folder, {**self.meta, "precision": self.plan.precision}, self.plan.device)
        batch = len(self.parity_inputs) if self.plan.dynamic_batch else 1
        # parity is against the PyTorch model the file was made from: after QAT that is the fine-tuned one
        reference = (run_batched(eager_runner(model), self.parity_inputs, len(self.parity_inputs)) if strategy == "qat"
                     else self.reference_parity)
        par = parity(run_batched(runner, self.parity_inputs, batch), reference, self.plan.precision)
        logits = run_batched(runner, self.x_test, batch)
        metrics = classification_metrics(self.y_test, logits.argmax(1), self.meta["classes"])
        return Attempt(strategy, folder, result.files, result, par, metrics["accuracy"], metrics)

    def run(self) -> dict:
        t0 = time.perf_counter()
        self.load_data()
        torch_runner = eager_runner(self.model)
        self.reference_parity = run_batched(torch_runner, self.parity_inputs, len(self.parity_inputs))
        ref_logits = run_batched(torch_runner, self.x_test, 64)
        self.reference = classification_metrics(self.y_test, ref_logits.argmax(1), self.meta["classes"])
        self.stage("reference", t0, f"pytorch fp32 {self.eval_split} accuracy {self.reference['accuracy']:.4f}")
        request = ExportRequest(self.plan.precision, self.plan.device, self.plan.dynamic_batch,
                                options={**self.plan.options, "max_drop": self.plan.max_drop,
                                         "validation": (self.x_val, self.y_val)})
        if self.plan.precision == "int8" and self.target.capabilities.int8_calibrated:
            request.calibration = self.calibration()
            self.stage("calibration", t0, f"{request.calibration.report['size']} train images")
        try:
            chosen, tried = self.search(request, t0)
            speed = self.speed_check(chosen, t0)
            return self.publish(chosen, tried, request, speed, t0)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.remove_empty_parents()

    def remove_empty_parents(self) -> None:
        """A failed first export leaves no empty <model>/<version>/<target> folders behind."""
        folder, top = self.final.parent, self.ws.home / "artifacts"
        while folder != top and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def search(self, request: ExportRequest, t0: float) -> tuple[Attempt, list[dict]]:
        strategies = getattr(self.target, "int8_strategies", ("ptq",)) if self.plan.precision == "int8" else ("export",)
        wanted = self.plan.options.get("strategies", strategies)
        unknown = [s for s in wanted if s not in strategies]
        if unknown:
            raise UnsupportedSpecError(f"{self.plan.target} has no INT8 strategy {', '.join(map(repr, unknown))}.",
                                       fix=f"Use some of: {', '.join(strategies)}.")
        strategies = [s for s in strategies if s in wanted]
        ref_acc = self.reference["accuracy"]
        tried: list[dict] = []
        for strategy in strategies:
            request.options["strategy"] = strategy
            attempt = self.attempt(strategy, request)
            tried.append(attempt.summary(ref_acc))
            detail = (f"{strategy}: accuracy {attempt.accuracy:.4f}, top-1 agreement {attempt.parity['top1_agreement']:.3f}, "
                      f"max |diff| {attempt.parity['max_abs_diff']:.2e}" if attempt.parity.get("checked") else
                      f"{strategy}: not runnable here ({attempt.parity['reason']})")
            self.stage("export", t0, detail)
            if not attempt.parity.get("checked"):
                return attempt, tried
            if not attempt.parity["passed"] and self.plan.precision != "int8":
                raise ParityError(f"{self.plan.target} {self.plan.precision} output differs from PyTorch: max |diff| "
                                  f"{attempt.parity['max_abs_diff']:.3g} (allowed {attempt.parity['tolerance']['max_abs_diff']:.3g}), "
                                  f"top-1 agreement {attempt.parity['top1_agreement']:.3f}.",
                                  fix="Report this as a bug with the model and target; use another target meanwhile.",
                                  details=attempt.parity)
            if attempt.parity["passed"] and (ref_acc - attempt.accuracy) * 100 <= self.plan.max_drop:
                return attempt, tried
        raise BudgetError(
            f"No {self.plan.precision} {self.plan.target} artifact met the budget (max drop {self.plan.max_drop} points from "
            f"PyTorch FP32 {ref_acc:.4f}); tried: " + "; ".join(
                f"{t['strategy']} -> {t['accuracy']:.4f} ({t['drop_points']:+.2f} pts, parity {'ok' if t['parity_passed'] else 'failed'})"
                for t in tried) + ".",
            fix="Raise --max-drop, add calibration data (more training images), or export at fp32 / fp16.",
            details={"reference_accuracy": ref_acc, "tried": tried})

    def speed_check(self, chosen: Attempt, t0: float) -> dict | None:
        """INT8 must be faster than FP32 on this device; smaller but not faster is refused or flagged."""
        if self.plan.precision != "int8" or not chosen.parity.get("checked"):
            return None
        if chosen.result.proxy:
            self.stage("speed check", t0, f"skipped: checked with {chosen.result.proxy}, not {self.plan.target}'s own runtime")
            return {"device": self.plan.device, "skipped": f"validated with {chosen.result.proxy}; measure on the device"}
        fp32_dir = self.staging / "fp32-baseline"
        fp32_dir.mkdir()
        fp32 = fp32_latency_ms(self.target, self.model, self.meta, fp32_dir, self.plan.device)
        int8 = median_latency_ms(self.target.load(chosen.folder, {**self.meta, "precision": "int8"}, self.plan.device),
                                 np.zeros((1, *self.meta["input_size"]), np.float32))
        sizes = [artifact_bytes(f, chosen.files) / 1e6 for f in (fp32_dir, chosen.folder)]
        speed = {"device": self.plan.device, "fp32_ms": round(fp32, 4), "int8_ms": round(int8, 4),
                 "speedup": round(fp32 / int8, 3), "fp32_size_mb": round(sizes[0], 4), "int8_size_mb": round(sizes[1], 4),
                 "faster": fp32 / int8 >= MIN_INT8_SPEEDUP, "min_speedup": MIN_INT8_SPEEDUP}
        self.stage("speed check", t0, f"batch 1 median: fp32 {fp32:.3f} ms, int8 {int8:.3f} ms ({speed['speedup']:.2f}x)")
        if not speed["faster"] and not self.plan.keep_if_slower:
            raise BudgetError(f"The INT8 {self.plan.target} artifact is smaller ({sizes[1]:.2f} vs {sizes[0]:.2f} MB) but not "
                              f"faster than FP32 here ({int8:.3f} vs {fp32:.3f} ms at batch 1), so it was not kept.",
                              fix="Use the fp32 artifact on this device, or pass --keep-if-slower to keep it flagged.",
                              code="INT8_NOT_FASTER", details=speed)
        return speed

    def publish(self, chosen: Attempt, tried: list[dict], request: ExportRequest, speed: dict | None, t0: float) -> dict:
        size_mb = artifact_bytes(chosen.folder, chosen.files) / 1e6
        ref_acc = self.reference["accuracy"]
        notes = list(chosen.result.notes) + ([] if not speed or speed.get("faster", True) else
                                             ["INT8 is smaller but NOT faster than FP32 on this device (kept on request)"])
        metadata = {
            "model": self.row["name"], "version": self.row["version"], "target": self.plan.target,
            "precision": self.plan.precision, "device": self.plan.device, "files": chosen.files,
            "size_mb": round(size_mb, 4), "task": self.meta["task"], "arch": self.meta["arch"],
            "classes": self.meta["classes"], "num_classes": self.meta["num_classes"],
            "input_shape": [-1 if self.plan.dynamic_batch else 1, *self.meta["input_size"]],
            "input_name": "input", "output_name": "logits",
            "preprocessing": self.meta["preprocessing"], "postprocessing": self.meta["postprocessing"],
            "parity": chosen.parity, "accuracy": chosen.accuracy, "reference_accuracy": ref_acc,
            "accuracy_drop_points": None if chosen.accuracy is None else round((ref_acc - chosen.accuracy) * 100, 3),
            "eval_split": self.eval_split, "per_class": (chosen.metrics or {}).get("per_class"),
            "reference_per_class": self.reference["per_class"], "max_drop": self.plan.max_drop,
            "compression": {"precision": self.plan.precision, "strategy": chosen.strategy, "tried": tried,
                            "qat": request.options.get("qat") if chosen.strategy == "qat" else None,
                            "calibration": request.calibration.report if request.calibration else None,
                            "speed": speed},
            "runnable_here": chosen.parity.get("checked", False), "proxy": chosen.result.proxy or None, "tool_versions": chosen.result.tool_versions,
            "notes": notes, "created_at": time.time(),
        }
        atomic_write_json(chosen.folder / "metadata.json", metadata)
        row = {"model": self.row["name"], "version": self.row["version"], "target": self.plan.target,
               "precision": self.plan.precision, "path": str(self.final.relative_to(self.ws.home)),
               "size_mb": metadata["size_mb"], "accuracy": chosen.accuracy, "reference_accuracy": ref_acc,
               "parity": chosen.parity, "compression": metadata["compression"], "created_at": metadata["created_at"]}
        old = self.final.with_name(f".old-{self.plan.precision}-{uuid.uuid4().hex[:6]}")
        with self.catalog.transaction():
            if self.final.exists():
                os.rename(self.final, old)
            os.rename(chosen.folder, self.final)
            self.catalog.put_artifact(row)
        shutil.rmtree(old, ignore_errors=True)
        self.stage("written", t0, str(self.final))
        return {"artifact": f"{self.row['name']}:v{self.row['version']}/{self.plan.target}/{self.plan.precision}",
                "path": str(self.final), **{k: metadata[k] for k in ("target", "precision", "size_mb", "accuracy",
                                                                      "reference_accuracy", "accuracy_drop_points",
                                                                      "parity", "compression", "notes", "runnable_here")}}
