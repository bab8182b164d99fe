"""What differs per task when an exported model is checked, measured or calibrated, behind one small
protocol so the export driver and the benchmarks stay task-neutral:

- how a dataset split becomes model inputs (the metadata's preprocessing) plus the ground truth;
- the shape of the model's raw output (runtimes that flatten it get it back in shape);
- the scores of raw outputs, with the primary metric the accuracy budget uses (top-1 accuracy, or
  mAP@0.5 for detection) and the recalls whose change after compression the report shows;
- parity of an exported file against PyTorch (top-1 agreement, or agreement of the decoded boxes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from factory.tasks.inputs import split_arrays
from factory.tasks.metrics import classification_metrics

# classification, per precision: (max abs logit difference relative to the logit scale, minimum top-1 agreement)
PARITY_TOLERANCE = {"fp32": (1e-3, 1.0), "fp16": (2e-2, 0.95), "int8": (None, 0.9)}
# detection, per precision: (max abs raw-output difference relative to its scale or None, IoU a box must reach
# to count as the same detection, minimum box agreement)
BOX_PARITY_TOLERANCE = {"fp32": (1e-3, 0.9, 0.98), "fp16": (None, 0.8, 0.95), "int8": (None, 0.5, 0.85)}
PARITY_SCORE = 0.3  # detections compared for parity: score >= this, matched against the other side's >= half of it


@dataclass
class EvalSet:
    """Preprocessed inputs (NCHW float32) and their ground truth: label indices [N] for classification,
    per image (boxes xyxy [k, 4] in input pixels, class indices [k], the image's (width, height) in input pixels,
    to which detections are clipped) for detection."""

    inputs: np.ndarray
    truth: Any


class TaskAdapter(Protocol):
    task: str
    metric: str  # the primary score's key, in [0, 1]: the accuracy budget is in points of it
    metric_label: str  # how people name it ("accuracy", "mAP@0.5")
    unsupported_strategies: dict[str, str]  # INT8 strategy -> why this task cannot use it

    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet: ...

    def output_shape(self, meta: dict) -> tuple[int, ...]: ...

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict: ...

    def parity(self, outputs: np.ndarray, reference: np.ndarray, precision: str, meta: dict) -> dict: ...

    def predictions(self, outputs: np.ndarray) -> list | None: ...


def shaped(outputs: np.ndarray, adapter: TaskAdapter, meta: dict) -> np.ndarray:
    """Raw outputs in the model's own shape [batch, ...] (ncnn and Core ML hand them back flat)."""
    outputs = np.asarray(outputs)
    return outputs.reshape(len(outputs), *adapter.output_shape(meta))


class Classification:
    task, metric, metric_label = "classification", "accuracy", "accuracy"
    unsupported_strategies: dict[str, str] = {}

    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        return EvalSet(*split_arrays(root, entries, meta))

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        return (meta["num_classes"],)

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict:
        metrics = classification_metrics(np.asarray(truth), outputs.argmax(1), meta["classes"])
        return {**metrics, "recall_by_class": {c: m["recall"] for c, m in metrics["per_class"].items()}}

    def parity(self, outputs: np.ndarray, reference: np.ndarray, precision: str, meta: dict) -> dict:
        diff = float(np.abs(outputs.astype(np.float64) - reference).max())
        scale = float(max(1.0, np.abs(reference).max()))
        agreement = float((outputs.argmax(1) == reference.argmax(1)).mean())
        tol_rel, min_agree = PARITY_TOLERANCE[precision]
        ok = agreement >= min_agree and (tol_rel is None or diff <= tol_rel * scale)
        return {"checked": True, "passed": bool(ok), "max_abs_diff": diff, "logit_scale": scale,
                "top1_agreement": agreement, "agreement": agreement, "agreement_kind": "top-1",
                "images": int(len(reference)),
                "tolerance": {"max_abs_diff": None if tol_rel is None else tol_rel * scale, "min_top1_agreement": min_agree}}

    def predictions(self, outputs: np.ndarray) -> list | None:
        return outputs.argmax(1).tolist()


class Detection:
    task, metric, metric_label = "detection", "map50", "mAP@0.5"
    unsupported_strategies = {"qat": "quantization-aware fine-tuning is built on the classification trainer"}

    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        from factory.training.data import normalize
        from factory.training.detection import DetectionTensors

        pre = meta["preprocessing"]
        data = DetectionTensors(root, entries, meta["classes"], pre["resize"][0])
        mean, std = (torch.tensor(pre[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        x = normalize(data.images, mean, std).numpy().astype(np.float32)
        return EvalSet(x, [(b.numpy(), lab.numpy(), extent) for b, lab, extent in zip(data.boxes, data.labels, data.extents)])

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        locations = sum(h * w for h, w in meta["postprocessing"]["feature_sizes"])
        return (locations, meta["num_classes"] + 5)

    def decode_all(self, outputs: np.ndarray, meta: dict, truth: Any = None) -> list[list[dict]]:
        """Detections per image; clipped to each image's extent when `truth` (from `eval_set`) gives it."""
        from factory.tasks.detection import clip_detections, decode

        found = [decode(out, meta["postprocessing"]) for out in outputs]
        return found if truth is None else [clip_detections(d, *t[2]) for d, t in zip(found, truth)]

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict:
        from factory.tasks.detection_metrics import coco_metrics

        xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]  # noqa: E731
        detections = {i: [(d["index"], xywh(d["box"]), d["score"]) for d in found]
                      for i, found in enumerate(self.decode_all(outputs, meta, truth))}
        gt = {i: [(int(k), xywh(b)) for b, k in zip(boxes, labels)] for i, (boxes, labels, _) in enumerate(truth)}
        metrics = coco_metrics(gt, detections, meta["classes"])
        return {**metrics, "images": len(truth),
                "recall_by_class": {c: m["recall50"] for c, m in metrics["per_class"].items()},
                "recall_by_size": {s: m["recall50"] for s, m in metrics["by_size"].items() if m["objects"]}}

    def parity(self, outputs: np.ndarray, reference: np.ndarray, precision: str, meta: dict) -> dict:
        tol_rel, min_iou, min_agree = BOX_PARITY_TOLERANCE[precision]
        diff = float(np.abs(outputs.astype(np.float64) - reference).max())
        scale = float(max(1.0, np.abs(reference).max()))
        found, expected = self.decode_all(outputs, meta), self.decode_all(reference, meta)
        matched = compared = 0
        ious: list[float] = []
        for a, b in zip(found, expected):
            for one, other in ((b, a), (a, b)):  # reference boxes found in the file's, and the file's in the reference's
                m, n, i = match_boxes(one, other, min_iou)
                matched, compared, ious = matched + m, compared + n, ious + i
        agreement = matched / compared if compared else 1.0
        ok = agreement >= min_agree and (tol_rel is None or diff <= tol_rel * scale)
        return {"checked": True, "passed": bool(ok), "max_abs_diff": diff, "logit_scale": scale,
                "box_agreement": agreement, "agreement": agreement, "agreement_kind": "box",
                "mean_iou": float(np.mean(ious)) if ious else None, "boxes_compared": compared,
                "images": int(len(reference)),
                "tolerance": {"max_abs_diff": None if tol_rel is None else tol_rel * scale, "min_iou": min_iou,
                              "min_box_agreement": min_agree, "score": PARITY_SCORE}}

    def predictions(self, outputs: np.ndarray) -> list | None:
        return None


def match_boxes(detections: list[dict], candidates: list[dict], min_iou: float) -> tuple[int, int, list[float]]:
    """(matched, compared, IoUs of the matches): each detection with score >= PARITY_SCORE is matched greedily,
    best score first, to an unused candidate of its class with score >= PARITY_SCORE / 2 and IoU >= min_iou."""
    from factory.tasks.detection_metrics import box_iou

    mine = sorted((d for d in detections if d["score"] >= PARITY_SCORE), key=lambda d: -d["score"])
    pool = [d for d in candidates if d["score"] >= PARITY_SCORE / 2]
    used: set[int] = set()
    ious: list[float] = []
    to_xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    for d in mine:
        options = [j for j, c in enumerate(pool) if j not in used and c["index"] == d["index"]]
        if not options:
            continue
        iou = box_iou(np.array([to_xywh(d["box"])]), np.array([to_xywh(pool[j]["box"]) for j in options]))[0]
        best = int(iou.argmax())
        if iou[best] >= min_iou:
            used.add(options[best])
            ious.append(float(iou[best]))
    return len(ious), len(mine), ious


ADAPTERS: dict[str, TaskAdapter] = {"classification": Classification(), "detection": Detection()}


def adapter_for(meta: dict) -> TaskAdapter:
    return ADAPTERS[meta.get("task", "classification")]
