"""COCO-style detection metrics, written out so they run anywhere (no compiled extension) and
checked against pycocotools in the tests: mAP@0.5:0.95, mAP@0.5, per-class AP, AP and recall by
object size (COCO's area rule: small < 32^2, medium < 96^2, large above), at 100 detections per image.

Boxes are [x, y, w, h] in pixels. Ground truth: {image_id: [(class_index, box)]}; detections:
{image_id: [(class_index, box, score)]}.
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
AREAS = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}
MAX_DETECTIONS = 100


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between xywh boxes a (N, 4) and b (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match(gt: np.ndarray, dt: np.ndarray, area: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, int]:
    """COCO's per-image matching for one class and area range: (dt matched [T, D], dt ignored [T, D], non-ignored gt)."""
    gt_area = gt[:, 2] * gt[:, 3] if len(gt) else np.zeros(0)
    gt_ignore = (gt_area < area[0]) | (gt_area > area[1])
    order = np.argsort(gt_ignore, kind="mergesort")  # non-ignored ground truth first
    gt, gt_ignore = gt[order], gt_ignore[order]
    ious = box_iou(dt[:, :4], gt)
    t_count, d_count = len(IOU_THRESHOLDS), len(dt)
    matched = np.zeros((t_count, d_count), bool)
    ignored = np.zeros((t_count, d_count), bool)
    for t, threshold in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(len(gt), bool)
        for d in range(d_count):
            best, m = min(threshold, 1 - 1e-10), -1
            for g in range(len(gt)):
                if taken[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m > -1:
                matched[t, d], ignored[t, d], taken[m] = True, gt_ignore[m], True
    dt_area = dt[:, 2] * dt[:, 3] if d_count else np.zeros(0)
    outside = (dt_area < area[0]) | (dt_area > area[1])
    ignored |= ~matched & outside[None]
    return matched, ignored, int((~gt_ignore).sum())


def _average_precision(scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """(AP per IoU threshold, recall per IoU threshold); -1 where there is no ground truth."""
    t_count = len(IOU_THRESHOLDS)
    if n_gt == 0:
        return -np.ones(t_count), -np.ones(t_count)
    order = np.argsort(-scores, kind="mergesort")
    matched, ignored = matched[:, order], ignored[:, order]
    tps = np.cumsum(matched & ~ignored, axis=1, dtype=float)
    fps = np.cumsum(~matched & ~ignored, axis=1, dtype=float)
    ap, rec = np.zeros(t_count), np.zeros(t_count)
    for t in range(t_count):
        tp, fp = tps[t], fps[t]
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, np.spacing(1))
        rec[t] = recall[-1] if len(recall) else 0.0
        for i in range(len(precision) - 1, 0, -1):
            precision[i - 1] = max(precision[i - 1], precision[i])
        inds = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
        q = np.array([precision[i] if i < len(precision) else 0.0 for i in inds])
        ap[t] = q.mean()
    return ap, rec


def coco_metrics(ground_truth: dict, detections: dict, classes: list[str]) -> dict:
    """map, map50, map75, per-class AP (0.5:0.95 and 0.5), AP and recall (COCO AR@100 and recall at
    IoU 0.5) per object size, for `classes` (indices into it in the inputs)."""
    images = sorted(set(ground_truth) | set(detections))
    per: dict[tuple[int, str], tuple] = {}
    for c in range(len(classes)):
        for name, area in AREAS.items():
            scores, matched, ignored, n_gt = [], [], [], 0
            for image in images:
                gt = np.array([b for k, b in ground_truth.get(image, []) if k == c], float).reshape(-1, 4)
                dts = sorted(((b, s) for k, b, s in detections.get(image, []) if k == c), key=lambda bs: -bs[1])[:MAX_DETECTIONS]
                dt = np.array([b for b, _ in dts], float).reshape(-1, 4)
                m, ig, n = _match(gt, dt, area)
                scores.append(np.array([s for _, s in dts], float))
                matched.append(m)
                ignored.append(ig)
                n_gt += n
            per[(c, name)] = _average_precision(np.concatenate(scores), np.concatenate(matched, axis=1),
                                                np.concatenate(ignored, axis=1), n_gt)

    def mean(values: list[float]) -> float:
        valid = [v for v in values if v > -1]
        return float(np.mean(valid)) if valid else -1.0

    def summary(area: str, t: int | None = None) -> tuple[float, float]:
        aps = [per[(c, area)][0] if t is None else per[(c, area)][0][t:t + 1] for c in range(len(classes))]
        recs = [per[(c, area)][1] if t is None else per[(c, area)][1][t:t + 1] for c in range(len(classes))]
        return mean([v for a in aps for v in a]), mean([v for r in recs for v in r])

    out = {"map": summary("all")[0], "map50": summary("all", 0)[0], "map75": summary("all", 5)[0],
           "per_class": {}, "by_size": {}}
    for c, name in enumerate(classes):
        ap, rec = per[(c, "all")]
        out["per_class"][name] = {"ap": mean(list(ap)), "ap50": float(ap[0]), "recall50": float(rec[0])}
    for area in ("small", "medium", "large"):
        ap, ar = summary(area)
        out["by_size"][area] = {"ap": ap, "recall": ar, "recall50": summary(area, 0)[1],
                                "objects": int(sum(1 for boxes in ground_truth.values() for _, b in boxes
                                                   if AREAS[area][0] <= b[2] * b[3] <= AREAS[area][1]))}
    return out
