"""`compress`: structured pruning toward a MAC reduction or a latency target measured on the
target's own runtime, fine-tuning, a new model version, then export to the target, all under one
accuracy budget (pruning's drop plus quantization's drop never exceed --max-drop)."""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from compression.pruning import finetune, model_cost, prune
from factory.catalog import Catalog
from factory.config import TrainConfig
from factory.errors import BudgetError, FactoryError, TrainingError, UnsupportedSpecError
from factory.datasets.splits import DatasetSplits
from factory.models import delete_model_version, load_model, register_model_version, resolve_model
from factory.refs import dataset_row_for
from factory.tasks import task_of
from factory.training.run import new_run_id
from factory.workspace import Workspace, atomic_write_json
from targets.base import TARGETS, Target
from targets.driver import ExportPlan, check_request
from targets.jobs import export_in_child
from targets.timing import fp32_latency_ms

Log = Callable[[str], None]


@dataclass
class CompressPlan:
    target: str
    prune: float | None = None  # fraction of MACs to remove
    target_latency_ms: float | None = None
    max_drop: float = 1.0
    precision: str = "fp32"
    finetune_epochs: int = 15
    keep_if_slower: bool = False


def target_latency_ms(target: Target, model: nn.Module, meta: dict) -> float:
    """Batch-1 median latency of `model` exported at fp32 to `target`, measured with its runtime here."""
    with tempfile.TemporaryDirectory() as tmp:
        latency = fp32_latency_ms(target, model, meta, Path(tmp))
    return float("nan") if latency is None else latency


def _finetune_config(catalog: Catalog, row: dict, meta: dict, epochs: int) -> TrainConfig:
    run = catalog.run(row["run_id"]) if row.get("run_id") else None
    base = {k: v for k, v in (run["config"] if run else {}).items() if k in TrainConfig.__dataclass_fields__}
    base.update(dataset=meta["dataset"], model=meta["arch"], img_size=meta["input_size"][-1], epochs=epochs,
                time_budget_min=None, lr=base.get("lr", 2e-3), warmup_epochs=0.0, pretrained=None,
                from_model=None, patience=max(epochs, 1))
    return TrainConfig.from_dict(base)


def compress(ws: Workspace, catalog: Catalog, ref: str, plan: CompressPlan, log: Log | None = None) -> dict:
    log = log or (lambda line: None)
    target = TARGETS.get(plan.target)()
    row = resolve_model(catalog, ref)
    model, meta = load_model(ws, row)
    task = task_of(meta)
    if "prune" in task.unsupported_strategies:
        raise UnsupportedSpecError(f"Structured pruning is not available for {row['name']}:v{row['version']}, a "
                                   f"{task.name} model: {task.unsupported_strategies['prune']}.",
                                   fix=f"Export it with INT8 quantization instead: edgefactory export {row['name']}:v{row['version']} "
                                       f"--target {plan.target} --precision int8")
    export_plan = ExportPlan(target=plan.target, precision=plan.precision, keep_if_slower=plan.keep_if_slower)
    check_request(target, export_plan, meta)  # before any pruning work, not after it
    measurable = target.capabilities.runs_here and plan.target not in ("tensorrt", "web")
    if plan.target_latency_ms is not None and not measurable:
        raise UnsupportedSpecError(f"A latency target cannot be measured for {plan.target} on this machine.",
                                   fix="Use --prune FRACTION for this target, or a target that runs here (onnxruntime, openvino).")
    data = DatasetSplits.open(ws, dataset_row_for(catalog, meta["dataset"]))
    root, (_, test), val, train = data.root, data.evaluation(), data.entries("val"), data.entries("train")
    before_acc = task.evaluate(model, meta, root, test)[task.metric]
    teacher = copy.deepcopy(model).eval()  # the unpruned parent teaches the pruned model while it fine-tunes
    before = {**model_cost(model, meta["input_size"]), "accuracy": before_acc,
              "latency_ms": target_latency_ms(target, model, meta) if measurable else None}
    stop = None
    if plan.target_latency_ms is not None:
        stop = lambda m: target_latency_ms(target, m, meta) <= plan.target_latency_ms  # noqa: E731
    report = prune(model, task.output_layers(meta), meta["input_size"], mac_reduction=plan.prune, stop=stop, log=log)
    cfg = _finetune_config(catalog, row, meta, plan.finetune_epochs)
    size, classes = meta["input_size"][-1], meta["classes"]
    run_id = new_run_id()
    catalog.create_run(run_id, "prune-finetune", {**cfg.to_dict(), "parent": f"{row['name']}:v{row['version']}"}, os.getpid())
    atomic_write_json(ws.run_dir(run_id) / "config.json", {**cfg.to_dict(), "pruning": report})
    log(f"fine-tune    {plan.finetune_epochs} epochs (run {run_id})")
    catalog.update_run(run_id, status="running")
    try:
        resolved = {**meta, "img_size": size}
        tuning = finetune(model, cfg, task.training_data(root, train, resolved),
                          task.training_data(root, val or train, resolved), meta["preprocessing"], ws.run_dir(run_id),
                          teacher=teacher)
    except BaseException as exc:
        catalog.update_run(run_id, status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                           error=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, (FactoryError, KeyboardInterrupt)):
            raise
        raise TrainingError(f"Fine-tuning the pruned model failed: {type(exc).__name__}: {exc}",
                            fix=f"See {ws.run_dir(run_id)}; nothing was registered.") from exc
    after_acc = task.evaluate(model, meta, root, test)[task.metric]
    after = {**report["after"], "accuracy": after_acc,
             "latency_ms": target_latency_ms(target, model, meta) if measurable else None}
    drop = round((before_acc - after_acc) * 100, 3)
    summary = {**report, "before": before, "after": after, "finetune": tuning, "accuracy_drop_points": drop,
               "latency_speedup": round(before["latency_ms"] / after["latency_ms"], 3) if measurable else None,
               "latency_measured_on": f"{plan.target} fp32, batch 1, this machine" if measurable else None}
    log(f"pruned       {report['mac_ratio']:.2f}x fewer MACs, accuracy {before_acc:.4f} -> {after_acc:.4f} ({drop:+.2f} pts)")
    if drop > plan.max_drop:
        catalog.update_run(run_id, status="failed", error="over the accuracy budget", result=summary)
        raise BudgetError(f"Pruning to {report['mac_ratio']:.2f}x fewer MACs cost {drop:.2f} points after fine-tuning "
                          f"(budget {plan.max_drop}); no model version was registered.",
                          fix="Prune less (smaller --prune), fine-tune longer (--finetune-epochs), or raise --max-drop.",
                          details=summary)
    new = register_model_version(ws, catalog, name=row["name"], arch=meta["arch"], classes=classes, img_size=size,
                                 state_dict=model.state_dict(), dataset=meta["dataset"], run_id=run_id,
                                 metrics={**row["metrics"], task.metric: after_acc, "macs": after["macs"], "params": after["params"]},
                                 task=task.name, preprocessing=meta["preprocessing"], postprocessing=meta["postprocessing"],
                                 extra={"pruned": True, "parent": f"{row['name']}:v{row['version']}", "pruning": summary})
    catalog.update_run(run_id, status="completed", result={"model": new["name"], "version": new["version"], **summary})
    log(f"registered   {new['name']}:v{new['version']}")
    export_plan.max_drop = max(plan.max_drop - max(drop, 0.0), 0.0)  # what pruning left of the budget
    try:
        exported = export_in_child(ws.home, f"{new['name']}:v{new['version']}", export_plan, log=log)
    except BaseException:
        delete_model_version(ws, catalog, f"{new['name']}:v{new['version']}")  # all or nothing
        catalog.update_run(run_id, status="failed", error="the export of the pruned model failed")
        raise
    return {"model": new["name"], "version": new["version"], **exported, "pruning": summary}
