"""Object detection as a Task: boxes with labels and scores (FCOS decode + NMS), COCO mAP@0.5."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from factory.errors import ConfigError, UnsupportedSpecError
from factory.i18n import register, tr
from factory.tasks.base import EvalSet, Task, normalized
from factory.tasks.detection.defaults import detection_size, object_samples
from factory.tasks.detection.datasets import EXPORT_FORMATS, export_detection, import_detection, write_detection
from factory.tasks.detection.formats import DETECTION_FORMATS, detect_detection_format
from factory.tasks.detection.metrics import box_iou, coco_metrics
from factory.tasks.detection.model import (DETECTORS, build_detector, clip_detections, decode, postprocessing_spec,
                                           unletterbox)
from factory.tasks.detection.training import (DetectionTensors, DetectionTrainer, detection_preprocessing,
                                              detector_imagenet_available, evaluate_detection_split, evaluate_detector,
                                              load_detector_imagenet)
from factory.tasks.detection.zh import ZH
from factory.text import table
from factory.training import defaults

# per precision: (max abs raw-output difference relative to its scale or None, IoU a box must reach to count as the
# same detection, minimum box agreement)
BOX_PARITY_TOLERANCE = {"fp32": (1e-3, 0.9, 0.98), "fp16": (None, 0.8, 0.95), "int8": (None, 0.5, 0.85)}
PARITY_SCORE = 0.3  # detections compared for parity: score >= this, matched against the other side's >= half of it
# detections a served detector returns: the decoder keeps scores down to 0.05 for mAP; people want fewer
DEFAULT_MIN_SCORE = 0.25
register("zh", ZH)


class Detection(Task):
    name = "detection"
    metric, metric_label, unit = "map50", "mAP@0.5", "boxes"
    default_arch = "mobilenet_v3_small"
    sniff_priority = 10  # its layouts (VOC, COCO, YOLO, ...) are more specific than folders of images
    export_formats = EXPORT_FORMATS
    unsupported_strategies = {"qat": "quantization-aware fine-tuning is built on the classification trainer",
                              "prune": "structured pruning fine-tunes with the classification trainer"}
    prediction_keys = ("label", "score", "index", "box")
    chat_patterns = (r"detect", r"bounding box", r"\bboxes\b", r"find (the )?objects", r"检测")
    min_score = DEFAULT_MIN_SCORE

    # -- datasets ------------------------------------------------------------------------------------
    def detect_format(self, root: Path) -> str:
        return detect_detection_format(root)

    def format_names(self) -> list[str]:
        return DETECTION_FORMATS.names()

    def import_dataset(self, ws, catalog, root: Path, name: str, *, fmt: str, seed: int, progress) -> dict:
        return import_detection(ws, catalog, root, name, fmt=fmt, seed=seed, progress=progress)

    def export_dataset(self, ws, row: dict, fmt: str, dest: Path) -> Path:
        return export_detection(ws, row, fmt, dest)

    def samples(self) -> dict[str, Callable[..., Path]]:
        def scenes(dest: Path, *, images: int = 60, classes: int = 3, seed: int = 0, layout: str = "coco",
                   **_: Any) -> Path:
            return write_detection(dest, images=images, classes=classes, seed=seed,
                                   layout="coco" if layout == "folder_per_class" else layout)

        return {"detection": scenes}

    # -- the chat's words ------------------------------------------------------------------------------
    upload_hint = " (boxes for object detection)"
    described = "object detectors (boxes)"
    demo = {"name": "scenes", "kind": "scenes",
            "summary": "I will import the detection demo data: 300 seeded synthetic 320 px scenes with circles, squares "
                       "and triangles in Pascal VOC XML, as dataset **scenes**."}

    def write_demo(self, dest: Path) -> Path:
        return write_detection(dest, images=300, size=320, seed=0, layout="voc")

    def upload_prompt(self, imported: str) -> str | None:
        return tr("An object detector, then. Upload a .zip with your images and their boxes: Pascal VOC XML, COCO "
                  "JSON, YOLO (with data.yaml), a Ku+ txkt-result.json, a ModelArts manifest or a CSV of coordinates; "
                  "say **demo** for synthetic scenes; or name an imported detection dataset (imported: {imported}).",
                  imported=imported)

    def class_counts(self, stats: dict) -> dict[str, int]:
        return stats.get("boxes_per_class") or {}

    def dataset_lines(self, stats: dict) -> list[str]:
        sizes = stats.get("boxes_by_size") or {}
        return [tr("{boxes} boxes ({per:g} per image typically; {negatives} images without any, kept as negatives). "
                   "By size: {sizes} (small is under 32x32 px).", boxes=stats.get("num_boxes", 0),
                   per=(stats.get("boxes_per_image") or {}).get("median", 0), negatives=stats.get("negative_images", 0),
                   sizes=", ".join(f"{tr(k)} {v}" for k, v in sizes.items()))]

    def propose(self, stats: dict, devices: list, latency_ms: float | None, size_mb: float | None) -> dict:
        """The FCOS detector's backbone from the images, their boxes and the slowest device."""
        side = int(max((stats.get("width") or {}).get("median", 320), (stats.get("height") or {}).get("median", 320)))
        sizes = stats.get("boxes_by_size") or {}
        small_share = sizes.get("small", 0) / max(1, sum(sizes.values()))
        slowest = min(devices, key=lambda d: d.fp32_gflops) if devices else None
        fast = slowest is not None and slowest.fp32_gflops >= 100 and (latency_ms is None or latency_ms >= 30)
        model = "mobilenet_v3_large" if fast else "mobilenet_v3_small"
        n = stats.get("num_images") or 0
        minutes = 5.0 if n < 300 else 10.0 if n < 3000 else 20.0
        why = (tr("an anchor-free FCOS detector on {model}: the images are about {side} px and ", model=model, side=side)
               + (tr("{share:.0%} of the boxes are small (under 32x32 px), so ", share=small_share) if small_share else "")
               + tr("the letterbox size keeps them visible; ")
               + (tr("the slowest device ({device}) has about {gflops:g} GFLOPS; ", device=tr(slowest.short_name),
                     gflops=slowest.fp32_gflops) if slowest else "")
               + tr("{n} images with {boxes} boxes train in about {minutes:g} minutes here.", n=n,
                    boxes=stats.get("num_boxes", 0), minutes=minutes))
        return {"model": model, "time_budget_min": minutes, "epochs": None, "reason": why}

    def evaluation_sentence(self, model: str, out: dict) -> str:
        m = out["metrics"]
        sizes = tr(", ").join(f"{tr(k)} {v['recall50']:.0%}" for k, v in m.get("by_size", {}).items() if v.get("objects"))
        worst = sorted(m.get("per_class", {}).items(), key=lambda kv: kv[1]["ap50"])[:3]
        text = tr("Training finished: **{model}** reaches **mAP@0.5 {map50:.2%}** on the test split (COCO mAP@0.5:0.95 "
                  "{map:.2%}, {boxes} boxes kept over {images} images).", model=model, map50=m["map50"], map=m["map"],
                  boxes=out.get("predictions", 0), images=len(out.get("images", [])))
        if sizes:
            text += " " + tr("Objects found (recall at IoU 0.5) by size: {sizes}.", sizes=sizes)
        if worst and worst[0][1]["ap50"] < 1:
            text += " " + tr("Hardest classes: {classes}.", classes=tr(", ").join(
                f"{c} (AP@0.5 {v['ap50']:.0%})" for c, v in worst))
        return text

    def stats_lines(self, stats: dict) -> list[str]:
        per = stats["boxes_per_image"]
        return [f"  {stats['num_boxes']} boxes ({', '.join(f'{k} {v}' for k, v in stats['boxes_by_size'].items())}), "
                f"per image {per['min']}-{per['max']} (median {per['median']}), "
                f"{stats['negative_images']} images without objects",
                *table([{"class": c, "boxes": n, "images": stats["images_per_class"][c]}
                        for c, n in stats["boxes_per_class"].items()], ["class", "boxes", "images"])]

    # -- models and training -------------------------------------------------------------------------
    def architectures(self) -> list[str]:
        return DETECTORS.names()

    def build(self, meta: dict) -> nn.Module:
        return build_detector(meta["arch"], meta["num_classes"])

    def resolve(self, ws, ds: dict, arch: str, res: defaults.Resolution, entries: list[dict], root: Path) -> dict:
        if res.given.get("from_model"):
            raise UnsupportedSpecError("--from is not available for detectors yet.",
                                       fix="Train the detector from scratch or from ImageNet weights (leave --from out).")
        spec = DETECTORS.get(arch)
        stats = ds["stats"]
        side = max((stats.get("width") or {}).get("median", spec.default_img_size),
                   (stats.get("height") or {}).get("median", spec.default_img_size))
        res.pick("img_size", lambda: detection_size(entries, side, spec.default_img_size))
        defaults.resolve_common(res, n_train=len(entries), image_side=side, default_size=spec.default_img_size,
                                weights_available=detector_imagenet_available(arch))
        defaults.resolve_flip(res, lambda: object_samples(root, entries))
        res.pick("crop_scale", lambda: (0.6, "unused by detectors (they zoom 0.6-1.4x instead)"))
        img_size = res.values["img_size"]
        if img_size % 32:
            raise ConfigError(f"A detector's input size must be a multiple of 32 (strides 8, 16, 32); got {img_size}.",
                              fix=f"Use --img-size {max(32, round(img_size / 32) * 32)}.")
        return {}

    def preprocessing(self, resolved: dict) -> dict:
        return detection_preprocessing(resolved["img_size"])

    def postprocessing(self, resolved: dict) -> dict:
        return postprocessing_spec(resolved["classes"], resolved["img_size"])

    def training_data(self, root: Path, entries: list[dict], resolved: dict) -> DetectionTensors:
        return DetectionTensors(root, entries, resolved["classes"], resolved["img_size"])

    def initial_model(self, resolved: dict, parent, sink) -> nn.Module:
        model = super().initial_model(resolved, parent, sink)
        if resolved.get("pretrained") == "imagenet":
            sink({"type": "init", "source": "imagenet",
                  "loaded_tensors": load_detector_imagenet(model, resolved["model"])["loaded"]})
        return model

    def trainer(self, cfg, model: nn.Module, train, val, preprocessing: dict, run_dir: Path, resolved: dict,
                **kwargs) -> DetectionTrainer:
        return DetectionTrainer(cfg, model, train, val, preprocessing, run_dir, resolved["classes"], **kwargs)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, meta: dict, root: Path, entries: list[dict]) -> dict:
        pre = meta["preprocessing"]
        data = DetectionTensors(root, entries, meta["classes"], pre["resize"][0])
        mean, std = (torch.tensor(pre[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        result = evaluate_detector(model, data, meta["postprocessing"], mean, std)
        result.pop("detections")
        return result

    def version_metrics(self, full: dict) -> dict:
        return {k: full[k] for k in ("map", "map50", "map75", "per_class", "by_size")}

    def evaluation(self, ws, row: dict, model: nn.Module, meta: dict, root: Path, entries: list[dict], split: str,
                   save_predictions) -> dict:
        return evaluate_detection_split(model, meta, root, entries, save_predictions)

    def score_text(self, metrics: dict) -> str:
        return f"mAP@0.5 {metrics['map50']:.4f}, mAP@0.5:0.95 {metrics['map']:.4f}"

    def eval_lines(self, out: dict) -> list[str]:
        m = out["metrics"]
        return [f"{out['model']}:v{out['version']} on {out['dataset']} {out['split']} ({len(out['images'])} images): "
                f"mAP@0.5:0.95 {m['map']:.4f}, mAP@0.5 {m['map50']:.4f}",
                *table([{"class": c, "ap": round(v["ap"], 4), "ap50": round(v["ap50"], 4),
                         "recall50": round(v["recall50"], 4)} for c, v in m["per_class"].items()],
                       ["class", "ap", "ap50", "recall50"]),
                "recall@0.5 by size: " + ", ".join(f"{k} {v['recall50']:.3f} ({v['objects']})" for k, v in m["by_size"].items()),
                *([f"predictions: {out['predictions_file']}"] if out.get("predictions_file") else [])]

    # -- export, benchmarks, prediction --------------------------------------------------------------
    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        pre = meta["preprocessing"]
        data = DetectionTensors(root, entries, meta["classes"], pre["resize"][0])
        return EvalSet(normalized(data.images, pre),
                       [(b.numpy(), lab.numpy(), extent) for b, lab, extent in zip(data.boxes, data.labels, data.extents)])

    def calibration_labels(self, entry: dict) -> set[str]:
        return {b["label"] for b in entry.get("boxes", [])}

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        locations = sum(h * w for h, w in meta["postprocessing"]["feature_sizes"])
        return (locations, meta["num_classes"] + 5)

    def decode_all(self, outputs: np.ndarray, meta: dict, truth: Any = None) -> list[list[dict]]:
        """Detections per image; clipped to each image's extent when `truth` (from `eval_set`) gives it."""
        found = [decode(out, meta["postprocessing"]) for out in outputs]
        return found if truth is None else [clip_detections(d, *t[2]) for d, t in zip(found, truth)]

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict:
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

    def report_scores(self, metrics: dict) -> dict:
        return {"map": metrics["map"], "map50": metrics["map50"]}

    def postprocess(self, raw: np.ndarray, meta: dict, sizes, top_k: int | None, min_score: float | None) -> list[list[dict]]:
        """Per image, detections scoring at least `min_score` (0.25 by default), best first, at most `top_k`
        (default: all; below 1 counts as 1), with boxes [x1, y1, x2, y2] in the original image's pixels."""
        min_score = DEFAULT_MIN_SCORE if min_score is None else min_score
        side = meta["preprocessing"]["resize"][0]
        out = []
        for one, (width, height) in zip(raw.reshape(len(raw), *self.output_shape(meta)), sizes):
            found = [d for d in decode(one, meta["postprocessing"]) if d["score"] >= min_score]
            found = found if top_k is None else found[:max(1, top_k)]
            out.append([{**d, "score": round(d["score"], 6), "box": [round(v, 2) for v in d["box"]]}
                        for d in unletterbox(found, side / max(width, height), width, height)])
        return out


def match_boxes(detections: list[dict], candidates: list[dict], min_iou: float) -> tuple[int, int, list[float]]:
    """(matched, compared, IoUs of the matches): each detection with score >= PARITY_SCORE is matched greedily,
    best score first, to an unused candidate of its class with score >= PARITY_SCORE / 2 and IoU >= min_iou."""
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
