"""The training engine: AdamW + warm-up/cosine, label smoothing, batch augmentation, early stopping
on validation accuracy, a time budget, seeded, resumable from its last checkpoint.

On a GPU it uses AMP and channels_last. Progress goes out as events (epoch, step, loss, metrics,
ETA) to a callback; the job layer persists them and the CLI draws a bar from them.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from factory.config import TrainConfig
from factory.training.data import ImageTensors, augment, batches, normalize
from factory.training.distributed import SINGLE, Group
from factory.workspace import atomic_torch_save

Event = dict[str, Any]
DEFAULT_EPOCHS = 30
DISTILL_T, DISTILL_ALPHA = 4.0, 0.7  # Hinton et al.'s soft targets: temperature and weight
BUDGET_EPOCH_CAP = 10_000
BN_CALIBRATION_IMAGES = 256  # images per BN re-estimation before each validation (benchmarks/perf/bn_validation.py)


CHECKPOINT = "last.pt"  # in the run's folder: the latest epoch's weights, optimizer, schedule and random state


class StopRequested(Exception):
    """Raised inside the loop when the caller asked the run to stop; the checkpoint is kept."""


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0
    elapsed_s: float = 0.0
    best_metric: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from factory.errors import ConfigError

        raise ConfigError("device=cuda was asked for but no CUDA GPU is visible.", fix="Use --device cpu or auto.")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def lr_factor(step: int, warmup_steps: int, progress: float) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay over `progress` in [0, 1]."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class Trainer:
    """Trains one model on one dataset version; `fit()` returns the best state dict and history.

    `metric` names the validation metric that early stopping and checkpoint selection watch (higher is better).
    """

    metric = "accuracy"
    metric_label: str | None = None  # how people name it (the task's words), for the end-of-run warnings

    def __init__(self, cfg: TrainConfig, model: nn.Module, train: ImageTensors, val: ImageTensors,
                 preprocessing: dict, run_dir: Path, *, on_event: Callable[[Event], None] | None = None,
                 stop: threading.Event | None = None, teacher: nn.Module | None = None, calibrate_bn: bool = True):
        cfg = cfg.filled()
        self.cfg, self.train, self.val, self.run_dir = cfg, train, val, run_dir
        self.calibrate_bn = calibrate_bn
        self.device = pick_device(cfg.device)
        self.model = model.to(self.device)
        # knowledge distillation (e.g. a pruned model learning from its unpruned parent)
        self.teacher = teacher.to(self.device).eval() if teacher is not None else None
        self.amp = self.device.type == "cuda"
        if self.amp:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(preprocessing["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocessing["std"], device=self.device).view(1, 3, 1, 1)
        self.optimizer = torch.optim.AdamW(self.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.on_event = on_event or (lambda e: None)
        self.stop = stop or threading.Event()
        self.state = TrainState()
        self.steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
        self.max_epochs = cfg.epochs or (BUDGET_EPOCH_CAP if cfg.time_budget_min else DEFAULT_EPOCHS)
        self.budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min else None
        self.warmup_steps = int(cfg.warmup_epochs * self.steps_per_epoch)
        self._calibration: torch.Tensor | None = None
        self.group: Group = SINGLE  # data-parallel ranks (factory.training.distributed): set before fit()
        self.step_elapsed = 0.0  # the run's clock at this step's start, as all ranks agree on it
        self.epoch_samples = 0

    # -- checkpoints --------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    def save_checkpoint(self, generator: torch.Generator) -> None:
        if not self.group.main:
            return
        atomic_torch_save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                           "scaler": self.scaler.state_dict(), "state": self.state.__dict__,
                           "rng": generator.get_state(), "torch_rng": torch.get_rng_state(),
                           **self.checkpoint_extra()}, self.last_path)

    def checkpoint_extra(self) -> dict:
        """What a task's trainer keeps in the checkpoint beyond the model and optimizer (a loss's own weights)."""
        return {}

    def restore_extra(self, checkpoint: dict) -> None:
        """Take back what `checkpoint_extra` saved."""

    def load_checkpoint(self, generator: torch.Generator) -> None:
        ckpt = torch.load(self.last_path, map_location="cpu", weights_only=False)  # RNG states must stay on the CPU
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        generator.set_state(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.restore_extra(ckpt)

    # -- loop -----------------------------------------------------------------------------------
    def progress_fraction(self, elapsed: float) -> float:
        by_steps = self.state.step / (self.max_epochs * self.steps_per_epoch)
        return max(by_steps, elapsed / self.budget_s) if self.budget_s else by_steps

    def fit(self, *, resume: bool = False) -> TrainState:
        generator = seed_everything(self.cfg.seed)
        if resume and self.last_path.exists():
            self.load_checkpoint(generator)
            self.on_event({"type": "resumed", "epoch": self.state.epoch, "step": self.state.step})
        patience_left = self.cfg.patience - (self.state.epoch - self.state.best_epoch)
        while self.state.epoch < self.max_epochs and patience_left > 0 and not self.budget_spent():
            start = time.perf_counter()
            loss = self.train_epoch(generator, start)
            train_s = time.perf_counter() - start
            value = self.validate()
            self.state.epoch += 1
            # every rank goes on with rank 0's score and clock: the same stops, the same schedule
            value, self.state.elapsed_s = self.group.from_main([value, self.state.elapsed_s + time.perf_counter() - start])
            if value > self.state.best_metric:
                self.state.best_metric, self.state.best_epoch = value, self.state.epoch
                if self.group.main:
                    atomic_torch_save(self.model.state_dict(), self.best_path)
            patience_left = self.cfg.patience - (self.state.epoch - self.state.best_epoch)
            record = {"epoch": self.state.epoch, "train_loss": loss, "samples": self.epoch_samples * self.group.world,
                      "train_s": round(train_s, 2),
                      f"val_{self.metric}": value, "val_metric": value,
                      "metric": self.metric, **self.labelled(), "lr": self.optimizer.param_groups[0]["lr"],
                      "elapsed_s": round(self.state.elapsed_s, 2)}
            self.state.history.append(record)
            self.save_checkpoint(generator)
            self.on_event({"type": "epoch", **record, "epochs": self.max_epochs, "best_epoch": self.state.best_epoch,
                           "eta_s": self.eta_s()})
        reason = ("time budget" if self.budget_spent() else "early stopping" if patience_left <= 0 else "epochs")
        self.on_event({"type": "finished", "reason": reason, "best_epoch": self.state.best_epoch, "metric": self.metric,
                       **self.labelled(),
                       "best_val_metric": self.state.best_metric, f"best_val_{self.metric}": self.state.best_metric})
        for warning in self.diagnose():
            self.on_event({"type": "warning", **warning})
        return self.state

    def validate(self) -> float:
        """The validation metric of this epoch's weights (rank 0's; other ranks wait for it)."""
        if self.calibrate_bn:  # every rank, alike: under SyncBatchNorm (NCCL) they compute the statistics together
            self.calibrate_batchnorm()  # validate (and keep as best) weights whose BN statistics match them
        return self.evaluate_metric() if self.group.main else 0.0

    def labelled(self) -> dict:
        """The tracked metric's name in people's words, for events that carry it (none when the task's own)."""
        return {"metric_label": self.metric_label} if self.metric_label else {}

    def calibrate_batchnorm(self) -> None:
        """Re-estimate BN running statistics on a fixed sample of training images before each validation.

        With BN momentum 0.01 (MobileNetV3) the running statistics of a short run lag the weights by hundreds
        of steps, and validation in eval mode then measures nothing (chance level while the loss falls). An
        exact average over BN_CALIBRATION_IMAGES un-augmented images costs one forward pass over them.
        """
        if self._calibration is None:
            order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(self.cfg.seed))
            self._calibration = order[:BN_CALIBRATION_IMAGES].sort().values
        recalibrate_batchnorm(self.model, self.train, {"mean": self.mean, "std": self.std},
                              indices=self._calibration, amp=self.amp)

    def recalibrate(self, model: nn.Module) -> None:
        """Exact BN statistics over all the training data for the kept weights (`model` on the CPU, after `fit`)."""
        recalibrate_batchnorm(model, self.train, {"mean": self.mean.cpu(), "std": self.std.cpu()})

    def chance_level(self) -> float:
        """The validation metric a model that learnt nothing reaches (the largest class's share)."""
        labels = getattr(self.val, "labels", None)
        if not isinstance(labels, torch.Tensor) or not len(labels):
            return 0.0
        return float(torch.bincount(labels).max()) / len(labels)

    def diagnose(self) -> list[dict]:
        """An honest end of run: say when validation never rose above chance, or the first epoch stayed best."""
        found, name = [], self.metric_label or self.metric.replace("_", " ")
        chance = self.chance_level()
        if self.state.epoch and self.state.best_metric <= chance + 0.02:
            found.append({"code": "VALIDATION_AT_CHANCE",
                          "message": f"Validation {name} never rose above chance ({self.state.best_metric:.3f}; chance "
                                     f"{chance:.3f}) in {self.state.epoch} epochs: the model learnt nothing it can use.",
                          "fix": "Give it more time (--time-budget), check the labels with `edgefactory dataset inspect`, "
                                 "or try --pretrained imagenet or a smaller --lr."})
        elif self.state.best_epoch == 1 and self.state.epoch >= 5:
            found.append({"code": "FIRST_EPOCH_BEST",
                          "message": f"The first of {self.state.epoch} epochs stayed the best (validation {name} "
                                     f"{self.state.best_metric:.3f}): later epochs did not improve on it.",
                          "fix": "Try a smaller --lr, more data, or check that validation images look like training images."})
        return found

    def budget_spent(self) -> bool:
        return self.budget_s is not None and self.state.elapsed_s >= self.budget_s

    def eta_s(self) -> float:
        per_epoch = self.state.elapsed_s / max(self.state.epoch, 1)
        by_epochs = per_epoch * (self.max_epochs - self.state.epoch)
        left = min(by_epochs, self.budget_s - self.state.elapsed_s) if self.budget_s else by_epochs
        return round(max(left, 0.0), 1)

    def epoch_batches(self, generator: torch.Generator) -> Iterator[tuple[Any, Any, int]]:
        """One epoch's shuffled batches as (images, targets, batch size), on the training device; a task's trainer
        whose targets are not one label per image (boxes, text) overrides this and `train_step`."""
        for images, labels in batches(self.train, self.cfg.batch_size, shuffle=True, generator=generator,
                                      workers=self.cfg.workers, group=self.group):
            yield images.to(self.device, non_blocking=True), labels.to(self.device), len(labels)

    def train_epoch(self, generator: torch.Generator, start: float) -> float:
        self.model.train()
        total, count = 0.0, 0
        last_event = time.perf_counter()
        for images, targets, n in self.epoch_batches(generator):
            # every rank stops at the same step and schedules its learning rate by the same clock
            stop, self.step_elapsed = self.group.agree(self.stop.is_set(), self.state.elapsed_s + time.perf_counter() - start)
            if stop:
                raise StopRequested()
            if count and self.budget_s and self.step_elapsed >= self.budget_s:
                break
            loss = self.train_step(images, targets, generator, start)
            total += loss * n
            count += n
            if time.perf_counter() - last_event > 1.0:
                last_event = time.perf_counter()
                self.on_event({"type": "step", "epoch": self.state.epoch + 1, "step": self.state.step,
                               "steps_per_epoch": self.steps_per_epoch, "loss": loss})
        self.epoch_samples = count  # this rank's (each rank trains as many)
        return total / max(count, 1)

    def param_groups(self) -> list[dict]:
        """The optimizer's parameter groups, each with its `lr_scale` (its learning rate over cfg.lr): one group
        at 1 here; a task's trainer gives a pretrained part a smaller step."""
        return [{"params": list(self.model.parameters()), "lr_scale": 1.0}]

    def scheduled_lr(self, start: float) -> None:
        """Set this step's learning rate: warm-up, then cosine over the epochs or the time budget (times each
        group's `lr_scale`)."""
        elapsed = self.step_elapsed if self.group.world > 1 else self.state.elapsed_s + time.perf_counter() - start
        factor = lr_factor(self.state.step, self.warmup_steps, self.progress_fraction(elapsed))
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * factor * group.get("lr_scale", 1.0)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, start: float) -> float:
        cfg = self.cfg
        x = augment(images, self.mean, self.std, hflip=cfg.hflip, crop_scale=cfg.crop_scale,
                    color_jitter=cfg.color_jitter, generator=generator)
        if self.amp:
            x = x.contiguous(memory_format=torch.channels_last)
        self.scheduled_lr(start)
        with torch.autocast(self.device.type, enabled=self.amp):
            logits = self.model(x)
            loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
            if self.teacher is not None:
                with torch.no_grad():
                    soft = F.softmax(self.teacher(x).float() / DISTILL_T, dim=1)
                kd = F.kl_div(F.log_softmax(logits.float() / DISTILL_T, dim=1), soft, reduction="batchmean")
                loss = (1 - DISTILL_ALPHA) * loss + DISTILL_ALPHA * DISTILL_T**2 * kd
        return self.optimize(loss)

    def optimize(self, loss: torch.Tensor) -> float:
        """One optimizer step on `loss` (scaled under AMP); counts the step and returns the loss's value."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.group.average_gradients(self.optimizer)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        return float(loss.detach())

    @torch.no_grad()
    def evaluate_metric(self) -> float:
        logits = predict_logits(self.model, self.val, self.mean, self.std, self.cfg.batch_size * 2, self.amp)
        return float((logits.argmax(1) == self.val.labels).float().mean()) if len(self.val) else 0.0


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageTensors, mean: torch.Tensor, std: torch.Tensor,
                   batch_size: int = 128, amp: bool = False) -> torch.Tensor:
    """Logits for every image of `data` in order (eval mode, no augmentation), on the CPU."""
    model.eval()
    device = mean.device
    out = []
    for images, _ in batches(data, batch_size, shuffle=False):
        with torch.autocast(device.type, enabled=amp):
            out.append(model(normalize(images.to(device), mean, std)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: Any, preprocessing: dict, batch_size: int = 128, *,
                          indices: torch.Tensor | None = None, amp: bool = False) -> int:
    """Re-estimate BatchNorm running statistics as an exact average over `data` (no augmentation), or over
    the images at `indices`; `data` is anything indexable whose items start with a uint8 [3, H, W] image and
    may hold them all in `images` [N, 3, H, W] (classification or detection tensors). `preprocessing` holds
    `mean` and `std` (lists or tensors). Runs on the model's device; leaves the model in eval mode.

    After pruning and a short fine-tune the running statistics lag behind the weights, most of all
    in architectures with a slow BN momentum (MobileNetV3 uses 0.01); this is cheap and exact.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches seen
    device = next(model.parameters()).device
    mean = torch.as_tensor(preprocessing["mean"], dtype=torch.float32).view(1, 3, 1, 1).to(device)
    std = torch.as_tensor(preprocessing["std"], dtype=torch.float32).view(1, 3, 1, 1).to(device)
    order = indices if indices is not None else torch.arange(len(data))
    images = getattr(data, "images", None)
    model.train()
    for first in range(0, len(order), batch_size):
        idx = order[first:first + batch_size]
        batch = images[idx] if images is not None else torch.stack([data[int(i)][0] for i in idx])
        with torch.autocast(device.type, enabled=amp):
            model(normalize(batch.to(device), mean, std))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()
    return len(norms)
