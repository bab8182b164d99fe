"""OCR metrics, as the field computes them (see ../shared/reference/ocr-anchors.md §3):

- detection precision, recall and H-mean by the ICDAR 2015 IoU protocol: invalid polygons are dropped; a ground
  truth whose text is `###` is don't-care, and so is a detection that lies more than half inside don't-care ground
  truth; care ground truth and care detections are matched one to one at polygon IoU > 0.5 (greedy in ground-truth
  order, the first free detection wins, as the RRC script and PaddleOCR do; `matching="hungarian"` maximises the
  number of matches instead); counts are summed over the whole set before dividing;
- recognition: word accuracy (exact and caseless), 1 - mean normalized edit distance, and the character error rate
  (edit distance summed over the set / ground-truth characters);
- end to end: the detection protocol where a match also needs the same text (exact, or caseless).

Polygons are lists of [x, y] points in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from shapely.geometry import Polygon

DONT_CARE = "###"
IOU_THRESHOLD = 0.5
DONT_CARE_OVERLAP = 0.5  # a detection this much (of its own area) inside don't-care ground truth is don't-care


def polygon(points: Sequence[Sequence[float]]) -> Polygon | None:
    """A valid polygon of at least three points with an area, else None (self-intersecting, degenerate)."""
    if len(points) < 3:
        return None
    shape = Polygon([(float(x), float(y)) for x, y in points])
    return shape if shape.is_valid and shape.area > 0 else None


def iou(a: Polygon, b: Polygon) -> float:
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Counts:
    """One image's (or, summed, a set's) detection counts."""

    care_gt: int = 0
    care_det: int = 0
    matched: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.care_gt + other.care_gt, self.care_det + other.care_det, self.matched + other.matched)

    def scores(self) -> dict[str, float]:
        recall = self.matched / self.care_gt if self.care_gt else 0.0
        precision = self.matched / self.care_det if self.care_det else 0.0
        hmean = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "hmean": hmean}


def match_image(truth: list[dict], found: list[dict], *, same_text: Callable[[str, str], bool] | None = None,
                matching: str = "greedy") -> tuple[Counts, list[tuple[int, int]]]:
    """Counts and matched (truth index, found index) pairs for one image. `truth` and `found` are lists of
    {"points": [[x, y], ...], "text": str}; `same_text(truth_text, found_text)` (end to end) must hold for a match."""
    gts = [(i, polygon(t["points"]), t.get("text", "")) for i, t in enumerate(truth)]
    gts = [(i, shape, text) for i, shape, text in gts if shape is not None]
    dets = [(j, polygon(d["points"]), d.get("text", "")) for j, d in enumerate(found)]
    dets = [(j, shape, text) for j, shape, text in dets if shape is not None]
    dont_care = [shape for _, shape, text in gts if text == DONT_CARE]
    care_gts = [(i, shape, text) for i, shape, text in gts if text != DONT_CARE]
    care_dets = [(j, shape, text) for j, shape, text in dets
                 if not dont_care or sum(shape.intersection(d).area for d in dont_care) / shape.area <= DONT_CARE_OVERLAP]
    ok = np.zeros((len(care_gts), len(care_dets)), bool)
    for a, (_, g, gt_text) in enumerate(care_gts):
        for b, (_, d, det_text) in enumerate(care_dets):
            ok[a, b] = iou(g, d) > IOU_THRESHOLD and (same_text is None or same_text(gt_text, det_text))
    pairs = _hungarian(ok) if matching == "hungarian" else _greedy(ok)
    counts = Counts(len(care_gts), len(care_dets), len(pairs))
    return counts, [(care_gts[a][0], care_dets[b][0]) for a, b in pairs]


def _greedy(ok: np.ndarray) -> list[tuple[int, int]]:
    used_gt, used_det, pairs = set(), set(), []
    for a in range(ok.shape[0]):
        for b in range(ok.shape[1]):
            if ok[a, b] and a not in used_gt and b not in used_det:
                used_gt.add(a)
                used_det.add(b)
                pairs.append((a, b))
    return pairs


def _hungarian(ok: np.ndarray) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment

    if not ok.size:
        return []
    rows, cols = linear_sum_assignment(-ok.astype(float))
    return [(int(a), int(b)) for a, b in zip(rows, cols) if ok[a, b]]


def detection_scores(truth: dict[str, list[dict]], found: dict[str, list[dict]], matching: str = "greedy") -> dict:
    """Precision, recall and H-mean over a set of images (image name -> text regions), counts summed first."""
    total = Counts()
    for name, regions in truth.items():
        total = total + match_image(regions, found.get(name, []), matching=matching)[0]
    return {**total.scores(), "care_gt": total.care_gt, "care_det": total.care_det, "matched": total.matched}


def end_to_end_scores(truth: dict[str, list[dict]], found: dict[str, list[dict]]) -> dict:
    """End-to-end H-mean: a detection counts only when it also reads the ground truth's text (exact; and caseless)."""
    out = {}
    for key, same in (("hmean", str.__eq__), ("hmean_caseless", lambda a, b: a.casefold() == b.casefold())):
        total = Counts()
        for name, regions in truth.items():
            total = total + match_image(regions, found.get(name, []), same_text=same)[0]
        out[key] = total.scores()["hmean"]
    return out


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions of one character cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def recognition_scores(truth: Sequence[str], read: Sequence[str]) -> dict[str, float]:
    """Word accuracy (exact, caseless), 1 - mean normalized edit distance, and CER over paired strings."""
    if len(truth) != len(read):
        raise ValueError(f"{len(truth)} ground-truth strings against {len(read)} read ones")
    if not truth:
        return {"word_accuracy": 0.0, "word_accuracy_caseless": 0.0, "one_minus_ned": 0.0, "cer": 0.0}
    distances = [edit_distance(t, r) for t, r in zip(truth, read)]
    ned = [d / max(len(t), len(r)) if max(len(t), len(r)) else 0.0 for d, t, r in zip(distances, truth, read)]
    chars = sum(len(t) for t in truth)
    return {"word_accuracy": sum(t == r for t, r in zip(truth, read)) / len(truth),
            "word_accuracy_caseless": sum(t.casefold() == r.casefold() for t, r in zip(truth, read)) / len(truth),
            "one_minus_ned": 1.0 - sum(ned) / len(ned),
            "cer": sum(distances) / chars if chars else float(sum(distances) > 0)}
