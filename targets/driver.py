"""The one export driver for every target:

check the request against the target's capabilities (one error listing every violation) -> export
(INT8: calibration set, then the target's quantization strategies in order until the accuracy
budget holds) -> parity against PyTorch on fixed inputs -> re-evaluate the exported file on the
test split with its own runtime -> INT8 must be faster than FP32 here -> metadata.json -> publish.

The task (`factory.tasks.base.Task`) decides what parity and the score mean: top-1 agreement and
accuracy for a classifier, agreement of the decoded boxes and mAP@0.5 for a detector.

Everything is written in a staging folder and renamed into place at the end, so a failed export
leaves the catalog and any earlier artifact exactly as they were.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from compression.calibration import DEFAULT_SIZE, select_calibration
from compression.qat import quantization_aware_finetune
from factory.config import TrainConfig
from factory.catalog import Catalog
from factory.errors import BudgetError, ExportError, FactoryError, ParityError, UnsupportedSpecError
from factory.datasets.splits import DatasetSplits
from factory.models import load_model, resolve_model
from factory.refs import dataset_row_for
from factory.tasks import task_of
from factory.tasks.base import EvalSet, shaped
from factory.workspace import Workspace, atomic_write_json
from targets.base import PRECISIONS, TARGETS, Calibration, ExportRequest, Target
from targets.pytorch import eager_runner
from targets.timing import fp32_latency_ms, median_latency_ms

PARITY_IMAGES = 64

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


def artifact_folders(top: Path) -> set[Path]:
    """The <model>, <model>/<version> and <model>/<version>/<target> folders under artifacts/ now."""
    return {p for pattern in ("*", "*/*", "*/*/*") for p in top.glob(pattern) if p.is_dir()}


def remove_empty_parents(folder: Path, top: Path, existed: set[Path]) -> None:
    """A failed first export leaves no empty <model>/<version>/<target> folders behind; folders that
    were there before it (in `existed`) stay."""
    while folder != top and folder not in existed and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


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
    if meta.get("dynamic_axes") and not caps.dynamic_shape:
        takes = ", ".join(name for name in TARGETS.names() if TARGETS.get(name).capabilities.dynamic_shape)
        problems.append(f"{target.name} takes inputs of one fixed size, and this {meta['task']} model's "
                        f"{meta.get('network', 'network')} takes inputs whose height or width varies (targets that take "
                        f"them: {takes})")
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


def joined(*inputs: np.ndarray | list) -> np.ndarray | list:
    """EvalSet inputs one after the other: arrays, or lists of arrays (a network of variable input size)."""
    if any(isinstance(x, list) for x in inputs):
        return [one for x in inputs for one in x]
    return np.concatenate(inputs)


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
                "parity_passed": self.parity.get("passed"), "agreement": self.parity.get("agreement"),
                "error": self.error}


class ExportJob:
    """One export of one model version to one target at one precision."""

    def __init__(self, ws: Workspace, catalog: Catalog, ref: str, plan: ExportPlan, log: Log | None = None):
        self.ws, self.catalog, self.plan = ws, catalog, plan
        self.log = log or (lambda line: None)
        self.target: Target = TARGETS.get(plan.target)()
        self.row = resolve_model(catalog, ref)
        self.model, self.meta = load_model(ws, self.row)
        self.task = task_of(self.meta)
        check_request(self.target, plan, self.meta)
        self.final = ws.home / "artifacts" / self.row["name"] / f"v{self.row['version']}" / plan.target / plan.precision
        self.staging = self.final.with_name(f".tmp-{plan.precision}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self.existed = {folder for folder in self.final.parents if folder.is_dir()}  # kept by remove_empty_parents

    def stage(self, name: str, start: float, detail: str = "") -> None:
        self.log(f"{name:<12s} {time.perf_counter() - start:7.2f} s  {detail}".rstrip())

    def open_data(self) -> None:
        """The dataset's folder and its train, val and evaluation (test, else val) entries."""
        data = DatasetSplits.open(self.ws, dataset_row_for(self.catalog, self.meta["dataset"]))
        self.root, self.train_entries, self.val_entries = data.root, data.entries("train"), data.entries("val")
        self.eval_split, self.test_entries = data.evaluation()

    def load_data(self) -> None:
        """The evaluation sets and the fixed parity inputs."""
        self.open_data()
        root, train, val, test = self.root, self.train_entries, self.val_entries, self.test_entries
        self.test: EvalSet = self.task.eval_set(root, test, self.meta)
        self.val: EvalSet = self.task.eval_set(root, val or test, self.meta)
        # fixed parity inputs: test images first, topped up from val and train so that a small
        # dataset's near-tie images cannot decide top-1 agreement on their own
        extra = PARITY_IMAGES - len(self.test.inputs) - len(self.val.inputs)
        x_train = (self.task.eval_set(root, train[:extra], self.meta).inputs if extra > 0 and train
                   else self.test.inputs[:0])
        self.parity_inputs = joined(self.test.inputs, self.val.inputs, x_train)[:PARITY_IMAGES]

    def outputs(self, runner, inputs: np.ndarray | list, batch: int) -> Any:
        """The runner's raw outputs over `inputs`, in the model's own output shape."""
        return self.task.outputs(runner, inputs, batch, self.meta)

    def score(self, outputs: np.ndarray, truth) -> float:
        """The task's primary metric (accuracy, mAP@0.5) of raw outputs: what the accuracy budget is counted in."""
        return self.task.score(shaped(outputs, self.task, self.meta), truth, self.meta)[self.task.metric]

    def calibration(self) -> Calibration:
        chosen, report = select_calibration(self.train_entries, self.meta["classes"], self.plan.calibration_size,
                                            labels_of=self.task.calibration_labels)
        inputs = self.task.eval_set(self.root, chosen, self.meta).inputs
        for warning in report["warnings"]:
            self.log(f"warning: {warning}")
        return Calibration(inputs, report)

    def qat_model(self, request: ExportRequest) -> torch.nn.Module:
        """The model fine-tuned with fake quantizers (compression.qat), for strategy `qat`."""
        size = self.meta["input_size"][-1]
        resolved = {**self.meta, "img_size": size}
        train = self.task.training_data(self.root, self.train_entries, resolved)
        val = self.task.training_data(self.root, self.val_entries or self.train_entries, resolved)
        cfg = TrainConfig(dataset=self.meta["dataset"], model=self.meta["arch"], img_size=size)
        model, record = quantization_aware_finetune(copy.deepcopy(self.model), request.calibration.inputs, train, val,
                                                    self.meta["preprocessing"], cfg, self.staging / "qat-run")
        request.options["qat"] = record
        return model

    def attempt(self, strategy: str, request: ExportRequest) -> Attempt:
        folder = self.staging / strategy
        folder.mkdir(parents=True)
        model = self.qat_model(request) if strategy == "qat" else copy.deepcopy(self.model)
        with self.stage_errors("export", strategy):
            result = self.target.export(model, self.meta, folder, request)
        if not result.runnable:
            return Attempt(strategy, folder, result.files, result, {"checked": False, "reason": "; ".join(result.notes)}, None)
        with self.stage_errors("run", strategy):
            return self.check(strategy, model, folder, result)

    @contextlib.contextmanager
    def stage_errors(self, stage: str, strategy: str) -> Iterator[None]:
        """Converters, quantizers and runtimes fail in many exception types: name the stage in one ExportError."""
        try:
            yield
        except FactoryError:
            raise
        except Exception as exc:
            what = "export" if stage == "export" else "loading or running the exported file"
            raise ExportError(f"{self.plan.target} {self.plan.precision} {what} ({strategy}) failed: "
                              f"{type(exc).__name__}: {str(exc)[:300]}",
                              fix="Try another precision or target, and report the model and versions as a bug.") from exc

    def check(self, strategy: str, model: torch.nn.Module, folder: Path, result: Any) -> Attempt:
        """Parity against PyTorch and the score on the test split, with the target's own runtime."""
        runner = self.target.load(folder, {**self.meta, "precision": self.plan.precision}, self.plan.device)
        batch = len(self.parity_inputs) if self.plan.dynamic_batch else 1
        # parity is against the PyTorch model the file was made from: after QAT that is the fine-tuned one
        reference = (self.outputs(eager_runner(model), self.parity_inputs, len(self.parity_inputs)) if strategy == "qat"
                     else self.reference_parity)
        par = self.task.parity(self.outputs(runner, self.parity_inputs, batch), reference, self.plan.precision, self.meta)
        metrics = self.task.score(self.outputs(runner, self.test.inputs, batch), self.test.truth, self.meta)
        return Attempt(strategy, folder, result.files, result, par, metrics[self.task.metric], metrics)

    def run(self) -> dict:
        t0 = time.perf_counter()
        try:
            request = self.prepare(t0)
            chosen, tried = self.search(request, t0)
            speed = self.speed_check(chosen, t0)
            return self.publish(chosen.folder, self.metadata(chosen, tried, request, speed), t0)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.remove_empty_parents()

    def prepare(self, t0: float) -> ExportRequest:
        """The data, PyTorch's reference outputs and score, and the request (with calibration images for INT8)."""
        self.load_data()
        torch_runner = eager_runner(self.model)
        self.reference_parity = self.outputs(torch_runner, self.parity_inputs, len(self.parity_inputs))
        self.reference = self.task.score(self.outputs(torch_runner, self.test.inputs, 32), self.test.truth, self.meta)
        self.stage("reference", t0, f"pytorch fp32 {self.eval_split} {self.task.metric_label} "
                                    f"{self.reference[self.task.metric]:.4f}")
        request = ExportRequest(self.plan.precision, self.plan.device, self.plan.dynamic_batch,
                                options={**self.plan.options, "max_drop": self.plan.max_drop,
                                         "validation": (self.val.inputs, self.val.truth), "score": self.score})
        if self.plan.precision == "int8" and self.target.capabilities.int8_calibrated:
            request.calibration = self.calibration()
            self.stage("calibration", t0, f"{request.calibration.report['size']} train images")
        return request

    def remove_empty_parents(self) -> None:
        remove_empty_parents(self.final.parent, self.ws.home / "artifacts", self.existed)

    def strategies(self) -> list[str]:
        """The target's INT8 strategies this task can use, narrowed to the ones asked for (in the target's order)."""
        if self.plan.precision != "int8":
            return ["export"]
        offered = getattr(self.target, "int8_strategies", ("ptq",))
        wanted = self.plan.options.get("strategies", offered)
        unknown = [s for s in wanted if s not in offered]
        if unknown:
            raise UnsupportedSpecError(f"{self.plan.target} has no INT8 strategy {', '.join(map(repr, unknown))}.",
                                       fix=f"Use some of: {', '.join(offered)}.")
        unusable = {s: why for s, why in self.task.unsupported_strategies.items() if s in wanted}
        if unusable and set(wanted) <= set(unusable):
            raise UnsupportedSpecError(f"A {self.task.name} model cannot use INT8 strategy "
                                       + "; ".join(f"{s!r} ({why})" for s, why in unusable.items()) + ".",
                                       fix=f"Use some of: {', '.join(s for s in offered if s not in unusable)}.")
        return [s for s in offered if s in wanted and s not in unusable]

    def describe(self, attempt: Attempt) -> str:
        par = attempt.parity
        if not par.get("checked"):
            return f"{attempt.strategy}: not runnable here ({par['reason']})"
        return (f"{attempt.strategy}: {self.task.metric_label} {attempt.accuracy:.4f}, {par['agreement_kind']} agreement "
                f"{par['agreement']:.3f}, max |diff| {par['max_abs_diff']:.2e}")

    def search(self, request: ExportRequest, t0: float) -> tuple[Attempt, list[dict]]:
        ref_acc = self.reference[self.task.metric]
        tried: list[dict] = []
        for strategy in self.strategies():
            request.options["strategy"] = strategy
            attempt = self.attempt(strategy, request)
            tried.append(attempt.summary(ref_acc))
            self.stage("export", t0, self.describe(attempt))
            if not attempt.parity.get("checked"):
                return attempt, tried
            if not attempt.parity["passed"] and self.plan.precision != "int8":
                allowed = attempt.parity["tolerance"]["max_abs_diff"]
                raise ParityError(f"{self.plan.target} {self.plan.precision} output differs from PyTorch: max |diff| "
                                  f"{attempt.parity['max_abs_diff']:.3g}"
                                  + (f" (allowed {allowed:.3g})" if allowed is not None else "")
                                  + f", {attempt.parity['agreement_kind']} agreement {attempt.parity['agreement']:.3f}.",
                                  fix="Report this as a bug with the model and target; use another target meanwhile.",
                                  details=attempt.parity)
            if attempt.parity["passed"] and (ref_acc - attempt.accuracy) * 100 <= self.plan.max_drop:
                return attempt, tried
        raise BudgetError(
            f"No {self.plan.precision} {self.plan.target} artifact met the budget (max drop {self.plan.max_drop} points of "
            f"{self.task.metric_label} from PyTorch FP32 {ref_acc:.4f}); tried: " + "; ".join(
                f"{t['strategy']} -> {t['accuracy']:.4f} ({t['drop_points']:+.2f} pts, parity {'ok' if t['parity_passed'] else 'failed'})"
                for t in tried) + ".",
            fix="Raise --max-drop, add calibration data (more training images), or export at fp32 / fp16.",
            details={"reference_accuracy": ref_acc, "metric": self.task.metric, "tried": tried})

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

    def metadata(self, chosen: Attempt, tried: list[dict], request: ExportRequest, speed: dict | None) -> dict:
        """metadata.json of the chosen attempt: what it is, how it was made and checked, how it scores."""
        size_mb = artifact_bytes(chosen.folder, chosen.files) / 1e6
        ref_acc = self.reference[self.task.metric]
        notes = list(chosen.result.notes) + ([] if not speed or speed.get("faster", True) else
                                             ["INT8 is smaller but NOT faster than FP32 on this device (kept on request)"])
        metadata = {
            "model": self.row["name"], "version": self.row["version"], "target": self.plan.target,
            "precision": self.plan.precision, "device": self.plan.device, "files": chosen.files,
            "size_mb": round(size_mb, 4), "task": self.task.name, "arch": self.meta["arch"],
            "classes": self.meta["classes"], "num_classes": self.meta["num_classes"],
            "input_shape": [-1 if self.plan.dynamic_batch else 1, *self.meta["input_size"]],
            "input_name": "input", "output_name": "logits", "output_shape": [*self.task.output_shape(self.meta)],
            "preprocessing": self.meta["preprocessing"], "postprocessing": self.meta["postprocessing"],
            "parity": chosen.parity, "accuracy": chosen.accuracy, "reference_accuracy": ref_acc,
            "accuracy_drop_points": None if chosen.accuracy is None else round((ref_acc - chosen.accuracy) * 100, 3),
            "metric": self.task.metric, "eval_split": self.eval_split, "per_class": (chosen.metrics or {}).get("per_class"),
            "reference_per_class": self.reference.get("per_class"), "by_size": (chosen.metrics or {}).get("by_size"),
            "reference_by_size": self.reference.get("by_size"), "max_drop": self.plan.max_drop,
            "compression": {"precision": self.plan.precision, "strategy": chosen.strategy, "tried": tried,
                            "qat": request.options.get("qat") if chosen.strategy == "qat" else None,
                            "calibration": request.calibration.report if request.calibration else None,
                            "speed": speed},
            "runnable_here": chosen.parity.get("checked", False), "proxy": chosen.result.proxy or None, "tool_versions": chosen.result.tool_versions,
            "notes": notes, "created_at": time.time(),
        }
        return metadata

    def publish(self, folder: Path, metadata: dict, t0: float) -> dict:
        """Write metadata.json into the staged `folder`, move it into place and record it in the catalog, in one step."""
        atomic_write_json(folder / "metadata.json", metadata)
        row = {"model": self.row["name"], "version": self.row["version"], "target": self.plan.target,
               "precision": self.plan.precision, "path": str(self.final.relative_to(self.ws.home)),
               **{k: metadata[k] for k in ("size_mb", "accuracy", "reference_accuracy", "parity", "compression",
                                           "created_at")}}
        old = self.final.with_name(f".old-{self.plan.precision}-{uuid.uuid4().hex[:6]}")
        with self.catalog.transaction():
            if self.final.exists():
                os.rename(self.final, old)
            os.rename(folder, self.final)
            self.catalog.put_artifact(row)
        shutil.rmtree(old, ignore_errors=True)
        self.stage("written", t0, str(self.final))
        return {"artifact": f"{self.row['name']}:v{self.row['version']}/{self.plan.target}/{self.plan.precision}",
                "path": str(self.final), **{k: metadata[k] for k in ("target", "precision", "size_mb", "accuracy",
                                                                      "reference_accuracy", "accuracy_drop_points",
                                                                      "parity", "compression", "notes", "runnable_here",
                                                                      "task", "metric")}}
