"""Training an embedder: P x K batches (PER_IDENTITY images of each identity, pytorch-metric-learning's
MPerClassSampler), the engine's batch augmentation plus a random rotation, a metric-learning loss (with its own
weights, trained and checkpointed beside the model), early stopping on validation Recall@1 over identities the
model never trains on."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from factory.training.data import augment
from factory.training.engine import Trainer, predict_logits
from factory.tasks.retrieval.metrics import retrieval_metrics
from factory.tasks.retrieval.models import LOSSES, PER_IDENTITY

ROTATION_DEG = 15.0


class RetrievalTrainer(Trainer):
    metric = "recall@1"

    def __init__(self, cfg, model, train, val, preprocessing, run_dir, *, loss: str, embedding_dim: int, **kwargs):
        super().__init__(cfg, model, train, val, preprocessing, run_dir, **kwargs)
        used = torch.unique(train.labels)
        self.remap = torch.full((int(train.labels.max()) + 1 if len(train.labels) else 1,), -1, dtype=torch.long)
        self.remap[used] = torch.arange(len(used))  # identity indices of the training split, 0..n-1 for the loss
        self.loss_fn, self.miner = LOSSES.get(loss).build(len(used), embedding_dim)
        self.loss_fn = self.loss_fn.to(self.device)
        extra = list(self.loss_fn.parameters())
        if extra:  # a classification-style loss owns a weight per identity: it learns beside the model
            self.optimizer.add_param_group({"params": extra, "lr": self.cfg.lr, "weight_decay": 0.0})
        self.per_identity = PER_IDENTITY

    def checkpoint_extra(self) -> dict:
        return {"loss": self.loss_fn.state_dict()}

    def restore_extra(self, checkpoint: dict) -> None:
        if "loss" in checkpoint:
            self.loss_fn.load_state_dict(checkpoint["loss"])

    def epoch_batches(self, generator: torch.Generator) -> Iterator[tuple[Any, Any, int]]:
        """P x K batches over every training image once per epoch (about), in an order drawn from `generator`."""
        labels = self.train.labels
        by_id: dict[int, list[int]] = {}
        for i, lab in enumerate(labels.tolist()):
            by_id.setdefault(lab, []).append(i)
        ids = [k for k, v in by_id.items() if len(v) >= 2] or list(by_id)
        k = self.per_identity
        p = max(2, self.cfg.batch_size // k)
        for _ in range(self.steps_per_epoch):
            chosen = torch.randperm(len(ids), generator=generator)[:p].tolist()
            idx = []
            for c in chosen:
                pool = by_id[ids[c]]
                picks = torch.randint(len(pool), (k,), generator=generator) if len(pool) < k else \
                    torch.randperm(len(pool), generator=generator)[:k]
                idx += [pool[j] for j in picks.tolist()]
            # the whole batch drawn alike on every rank (their generators stay together); a data-parallel rank takes
            # every N-th image, so each holds every chosen identity with K / N of its images
            idx = self.group.shard(idx)
            index = torch.tensor(idx)
            images = self.train.images[index] if self.train.images is not None else \
                torch.stack([self.train[i][0] for i in idx])
            yield images.to(self.device), self.remap[labels[index]].to(self.device), len(idx)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, start: float) -> float:
        cfg = self.cfg
        x = augment(images, self.mean, self.std, hflip=cfg.hflip, crop_scale=cfg.crop_scale,
                    color_jitter=cfg.color_jitter, generator=generator)
        x = rotate(x, ROTATION_DEG, generator)
        self.scheduled_lr(start)
        with torch.autocast(self.device.type, enabled=self.amp):
            emb = self.model(x).float()
        pairs = self.miner(emb, labels) if self.miner is not None else None
        return self.optimize(self.loss_fn(emb, labels, pairs) if pairs is not None else self.loss_fn(emb, labels))

    @torch.no_grad()
    def evaluate_metric(self) -> float:
        if not len(self.val):
            return 0.0
        emb = predict_logits(self.model, self.val, self.mean, self.std, self.cfg.batch_size * 2, self.amp).numpy()
        return retrieval_metrics(emb, self.val.labels.tolist())["recall@1"]

    def chance_level(self) -> float:
        """Recall@1 of a model that learnt nothing: the chance that one random other image has the same identity."""
        counts = np.bincount(self.val.labels.numpy()) if len(self.val) else np.zeros(1)
        n = counts.sum()
        return float((counts * (counts - 1)).sum() / max(n * (n - 1), 1))


def rotate(x: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image of a normalised batch by a random angle in [-degrees, degrees] (reflection padding)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
