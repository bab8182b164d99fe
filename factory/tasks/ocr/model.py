"""The OCR model's two networks and the detector's training targets (ocr-anchors.md §2):

- `DBDetector`: a backbone's stride-4/8/16/32 features, a small FPN (each level to `inner` channels, upsampled
  and concatenated), and the DB head: a probability map and a threshold map at the input's resolution. In
  training it also returns the approximate binary map 1 / (1 + exp(-k (P - T))), k = 50; exported, it returns the
  probability map only (`export_mode`).
- `CTCRecognizer`: a convolutional text-line encoder (height `height` down to 1, width / 4 time steps) with a
  temporal convolution neck (no recurrence: every target exports it, at any width) and a linear head over the
  dictionary plus the blank (index 0).
- `db_targets`: the shrunk-kernel map (polygons shrunk by A (1 - r^2) / L, r = 0.4), the threshold map (1 - distance
  to the border / that distance inside the dilated polygon, scaled to 0.3-0.7), and the masks (don't-care text and
  text under `min_text` pixels on its short side are left out of the losses).
- `db_loss`: 5 x balanced BCE (hard negatives 3:1) on the probability map + 10 x L1 on the threshold map inside the
  dilated text + Dice on the binary map, as PaddleOCR's DBLoss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from shapely.geometry import Polygon
from torch import nn

from factory.tasks.ocr.metrics import DONT_CARE

SHRINK_RATIO = 0.4
THRESH_MIN, THRESH_MAX = 0.3, 0.7
MIN_TEXT = 8  # px on the short side: smaller text is left out of the detector's losses
K = 50.0
PROB_PRIOR_LOGIT = -2.0


def conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """Four stages at strides 4, 8, 16 and 32 (tests and the tiny_* models)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, width, 2), conv_bn(width, width, 2))
        self.stages = nn.ModuleList([conv_bn(width, width), conv_bn(width, 2 * width, 2), conv_bn(2 * width, 4 * width, 2),
                                     conv_bn(4 * width, 4 * width, 2)])
        self.channels = [width, 2 * width, 4 * width, 4 * width]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, out = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class DBDetector(nn.Module):
    def __init__(self, backbone: nn.Module, channels: list[int], inner: int = 32):
        super().__init__()
        self.backbone = backbone
        self.lateral = nn.ModuleList([nn.Conv2d(c, inner, 1) for c in channels])
        self.smooth = nn.ModuleList([conv_bn(inner, inner // 4) for _ in channels])
        self.prob_head = self._head(inner)
        self.thresh_head = self._head(inner)
        # text covers a few per cent of a picture: starting the probability map near 0.1 instead of 0.5 lets the
        # map learn text from background in hundreds of steps instead of thousands (as the prior in focal loss)
        nn.init.constant_(self.prob_head[-2].bias, PROB_PRIOR_LOGIT)
        self.export_mode = False

    @staticmethod
    def _head(inner: int) -> nn.Sequential:
        mid = max(inner // 4, 4)
        return nn.Sequential(conv_bn(inner, mid), nn.ConvTranspose2d(mid, mid, 2, 2), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                             nn.ConvTranspose2d(mid, 1, 2, 2), nn.Sigmoid())

    def forward(self, x: torch.Tensor):
        feats = [lat(f) for lat, f in zip(self.lateral, self.backbone(x))]
        for i in range(len(feats) - 2, -1, -1):  # top-down
            feats[i] = feats[i] + F.interpolate(feats[i + 1], size=feats[i].shape[-2:], mode="nearest")
        size = feats[0].shape[-2:]
        fused = torch.cat([F.interpolate(s(f), size=size, mode="nearest") for s, f in zip(self.smooth, feats)], 1)
        prob = self.prob_head(fused)
        if self.export_mode or not self.training:
            return prob
        thresh = self.thresh_head(fused)
        return prob, thresh, torch.sigmoid(K * (prob - thresh))


class CTCRecognizer(nn.Module):
    def __init__(self, classes: int, height: int = 32, width: int = 32):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(conv_bn(3, w), nn.MaxPool2d(2), conv_bn(w, 2 * w), nn.MaxPool2d(2),
                                     conv_bn(2 * w, 4 * w), conv_bn(4 * w, 4 * w), nn.MaxPool2d((2, 1)),
                                     conv_bn(4 * w, 8 * w), nn.MaxPool2d((2, 1)))
        self.neck = nn.Sequential(nn.Conv1d(8 * w, 8 * w, 3, padding=1), nn.BatchNorm1d(8 * w), nn.ReLU(inplace=True),
                                  nn.Conv1d(8 * w, 8 * w, 3, padding=1), nn.BatchNorm1d(8 * w), nn.ReLU(inplace=True))
        self.head = nn.Conv1d(8 * w, classes, 1)
        self.height = height

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, height, W) -> (N, W / 4, classes) logits."""
        f = self.encoder(x).mean(2)  # height pooled away: (N, C, W / 4)
        return self.head(self.neck(f)).transpose(1, 2)


# -- the detector's targets --------------------------------------------------------------------------------------
def _distance_to_border(xs: np.ndarray, ys: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest edge of the closed polygon `poly` (K x 2)."""
    best = np.full(xs.shape, np.inf, np.float32)
    for a, b in zip(poly, np.roll(poly, -1, 0)):
        ab = b - a
        t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / max(float(ab @ ab), 1e-6), 0, 1)
        best = np.minimum(best, np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1])))
    return best


def _fill(mask: np.ndarray, poly: np.ndarray, value: float) -> None:
    from matplotlib.path import Path as Outline

    h, w = mask.shape
    x0, y0 = np.clip(np.floor(poly.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(poly.max(0)).astype(int), 0, [w - 1, h - 1])
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    inside = Outline(poly).contains_points(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)).reshape(xs.shape)
    mask[y0:y1 + 1, x0:x1 + 1][inside] = value


def db_targets(regions: list[dict], height: int, width: int) -> dict[str, np.ndarray]:
    """The DB training maps for one image of `height` x `width` whose text regions are `regions` (in pixels)."""
    shrink = np.zeros((height, width), np.float32)
    shrink_mask = np.ones((height, width), np.float32)
    thresh = np.zeros((height, width), np.float32)
    thresh_mask = np.zeros((height, width), np.float32)
    for region in regions:
        poly = np.asarray(region["points"], np.float64)
        shape = Polygon(poly)
        if not shape.is_valid or shape.area < 1:
            continue
        w_side = min(np.linalg.norm(poly[1] - poly[0]), np.linalg.norm(poly[2] - poly[1])) if len(poly) == 4 else 2 * shape.area / shape.length
        distance = shape.area * (1 - SHRINK_RATIO ** 2) / shape.length
        shrunk = shape.buffer(-distance, join_style=2)
        if region.get("text") == DONT_CARE or w_side < MIN_TEXT or shrunk.is_empty or shrunk.geom_type != "Polygon":
            _fill(shrink_mask, poly, 0.0)
            continue
        _fill(shrink, np.asarray(shrunk.exterior.coords)[:-1], 1.0)
        grown = np.asarray(shape.buffer(distance, join_style=2).exterior.coords)[:-1]
        _fill(thresh_mask, grown, 1.0)
        x0, y0 = np.clip(np.floor(grown.min(0)).astype(int), 0, [width - 1, height - 1])
        x1, y1 = np.clip(np.ceil(grown.max(0)).astype(int), 0, [width - 1, height - 1])
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float32)
        near = np.clip(1 - _distance_to_border(xs + 0.5, ys + 0.5, poly) / distance, 0, 1)
        thresh[y0:y1 + 1, x0:x1 + 1] = np.maximum(thresh[y0:y1 + 1, x0:x1 + 1], near)
    return {"shrink": shrink, "shrink_mask": shrink_mask, "thresh": thresh * (THRESH_MAX - THRESH_MIN) + THRESH_MIN,
            "thresh_mask": thresh_mask}


def db_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    prob, thresh, binary = (o[:, 0] for o in outputs)
    gt, mask = targets["shrink"], targets["shrink_mask"]
    positive, negative = gt * mask, (1 - gt) * mask
    n_pos = int(positive.sum())
    n_neg = min(int(negative.sum()), max(3 * n_pos, 1))
    bce = F.binary_cross_entropy(prob.clamp(1e-6, 1 - 1e-6), gt, reduction="none")
    hard = torch.topk((bce * negative).flatten(), n_neg).values
    balanced = ((bce * positive).sum() + hard.sum()) / (n_pos + n_neg + 1e-6)
    l1 = (torch.abs(thresh - targets["thresh"]) * targets["thresh_mask"]).sum() / (targets["thresh_mask"].sum() + 1e-6)
    dice = 1 - 2 * (binary * gt * mask).sum() / ((binary * mask).sum() + (gt * mask).sum() + 1e-6)
    return 5 * balanced + 10 * l1 + dice
