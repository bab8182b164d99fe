"""The embedding model: a registered backbone (every classification architecture) whose classifier layer
projects its pooled features to `embedding_dim`, a BN-neck (BatchNorm1d) and L2 normalisation in the graph, so
every exported file returns unit vectors and cosine similarity is an inner product.

The losses come from pytorch-metric-learning: a margin-based classification loss (ArcFace, CosFace, sub-center
ArcFace: each owns a weight matrix over the training identities, trained beside the model and never exported) and
a pair-based loss with mining (multi-similarity, the default: it works with few images per identity, where
ArcFace falls below plain softmax, pytorch-metric-learning#351).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from factory.registry import Registry
from factory.tasks.classification.models import MODELS

DEFAULT_DIM = 256
DEFAULT_ARCH = "efficientnet_lite0"
PER_IDENTITY = 4  # images of each identity in a batch (P x K sampling)


class Embedder(nn.Module):
    """backbone -> projection (the backbone's classifier layer, `embedding_dim` wide) -> BatchNorm1d -> L2."""

    def __init__(self, arch: str, embedding_dim: int):
        super().__init__()
        self.body = MODELS.get(arch).build(embedding_dim)
        self.neck = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.neck(self.body(x)), dim=1)


def build_embedder(arch: str, embedding_dim: int = DEFAULT_DIM) -> Embedder:
    return Embedder(arch, embedding_dim)


@dataclass(frozen=True)
class LossSpec:
    name: str
    description: str
    build: Callable[[int, int], tuple[nn.Module, nn.Module | None]]  # (identities, dim) -> (loss, miner or None)


LOSSES: Registry[LossSpec] = Registry("retrieval loss")
DEFAULT_LOSS = "multi_similarity"


def _multi_similarity(classes: int, dim: int) -> tuple[nn.Module, nn.Module]:
    from pytorch_metric_learning import losses, miners

    return losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), miners.MultiSimilarityMiner(epsilon=0.1)


def _arcface(classes: int, dim: int) -> tuple[nn.Module, None]:
    from pytorch_metric_learning import losses

    return losses.ArcFaceLoss(classes, dim, margin=28.6, scale=64), None


def _subcenter_arcface(classes: int, dim: int) -> tuple[nn.Module, None]:
    from pytorch_metric_learning import losses

    return losses.SubCenterArcFaceLoss(classes, dim, margin=28.6, scale=64, sub_centers=3), None


def _cosface(classes: int, dim: int) -> tuple[nn.Module, None]:
    from pytorch_metric_learning import losses

    return losses.CosFaceLoss(classes, dim, margin=0.35, scale=64), None


LOSSES.add("multi_similarity", LossSpec("multi_similarity", "multi-similarity loss with its miner (pairs within a "
                                        "batch; the default)", _multi_similarity))
LOSSES.add("arcface", LossSpec("arcface", "ArcFace (additive angular margin over the training identities)", _arcface))
LOSSES.add("subcenter_arcface", LossSpec("subcenter_arcface", "sub-center ArcFace (3 centres per identity: noisy "
                                         "labels)", _subcenter_arcface))
LOSSES.add("cosface", LossSpec("cosface", "CosFace (additive cosine margin)", _cosface))
