"""Structured channel pruning with torch-pruning (DepGraph): remove whole channels, coupled layers
together, toward a MAC reduction (or until a latency probe is satisfied), then fine-tune with the
factory's training engine. The pruned structure travels in the weights file (`tp.state_dict`), so a
pruned model version rebuilds from its architecture name like any other."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from factory.config import TrainConfig
from factory.errors import ConfigError, MissingDependencyError
from factory.training.data import ImageTensors
from factory.training.engine import Event, Trainer, recalibrate_batchnorm

MAX_STEPS = 80  # small steps, so pruning stops close to the requested reduction
ROUND_TO = 4  # channel counts stay multiples of 4 (SIMD-friendly) while steps stay fine-grained


def _tp():
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise MissingDependencyError(f"Pruning needs torch-pruning ({exc}).", fix="Run scripts/setup.") from None
    return tp


def model_cost(model: nn.Module, input_size: list[int]) -> dict:
    """MACs and parameters at batch 1."""
    macs, params = _tp().utils.count_ops_and_params(model, torch.zeros(1, *input_size))
    return {"macs": int(macs), "params": int(params)}


def prune(model: nn.Module, outputs: list[str], input_size: list[int], *, mac_reduction: float | None = None,
          stop: Callable[[nn.Module], bool] | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Prune `model` in place in small steps until MACs fall by `mac_reduction` (0.3 = 30 % fewer)
    or `stop(model)` says enough (a latency probe). The layers named in `outputs` (the task's output layers,
    `Task.output_layers`) keep their output channels."""
    if mac_reduction is None and stop is None:
        raise ConfigError("Nothing to prune toward.", fix="Give --prune FRACTION or --target-latency MS.")
    if mac_reduction is not None and not 0 < mac_reduction < 0.95:
        raise ConfigError(f"--prune {mac_reduction} is out of range.", fix="Use a fraction of MACs to remove, e.g. 0.3.")
    tp = _tp()
    model.eval()
    example = torch.zeros(1, *input_size)
    before = model_cost(model, input_size)
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=0.9, iterative_steps=MAX_STEPS,
                                  ignored_layers=[model.get_submodule(name) for name in outputs], round_to=ROUND_TO)
    steps, after = 0, before
    goal = None if mac_reduction is None else before["macs"] * (1 - mac_reduction)
    while steps < MAX_STEPS:
        pruner.step()
        steps += 1
        after = model_cost(model, input_size)
        log(f"prune step {steps}: {before['macs'] / after['macs']:.2f}x fewer MACs, "
            f"{before['params'] / after['params']:.2f}x fewer parameters")
        if (goal is not None and after["macs"] <= goal) or (stop is not None and stop(model)):
            break
    return {"method": "torch-pruning MetaPruner, GroupMagnitudeImportance(p=2), channels rounded to " + str(ROUND_TO),
            "requested_mac_reduction": mac_reduction, "steps": steps, "before": before, "after": after,
            "mac_ratio": round(before["macs"] / after["macs"], 3), "param_ratio": round(before["params"] / after["params"], 3)}


def finetune(model: nn.Module, cfg: TrainConfig, train: ImageTensors, val: ImageTensors, preprocessing: dict,
             run_dir: Path, on_event: Callable[[Event], None] | None = None,
             stop: threading.Event | None = None, teacher: nn.Module | None = None) -> dict:
    """Fine-tune a pruned model with the training engine, then re-estimate its BatchNorm statistics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, model, train, val, preprocessing, run_dir, on_event=on_event, stop=stop, teacher=teacher)
    state = trainer.fit()  # keeps the final (annealed) weights: after pruning, the schedule's end beats an early best
    model.cpu().eval()
    recalibrated = recalibrate_batchnorm(model, train, preprocessing)
    return {"epochs": state.epoch, "best_epoch": state.best_epoch, "best_val_accuracy": state.best_metric,
            "time_s": round(state.elapsed_s, 1), "lr": cfg.lr, "batchnorm_recalibrated_layers": recalibrated,
            "distilled_from_parent": teacher is not None}
