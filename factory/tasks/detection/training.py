"""Training a detector with the engine: letterboxed images cached as uint8 tensors with their boxes,
batch augmentation that moves the boxes with the pixels (horizontal flip, scale jitter with random
translation), the FCOS loss, and validation by COCO mAP@0.5 through the shared NumPy decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from factory.datasets.images import letterbox, load_rgb
from factory.errors import DatasetError, UnsupportedSpecError
from factory.tasks.base import IMAGENET_MEAN, IMAGENET_STD
from factory.tasks.classification.models import MODELS, imagenet_weights_available
from factory.tasks.detection.metrics import coco_metrics
from factory.tasks.detection.model import (DETECTORS, clip_detections, decode, detection_loss, locations,
                                           postprocessing_spec)
from factory.training.engine import Trainer
from factory.workspace import atomic_write_json

PAD = 114
SCALE_RANGE = (0.6, 1.4)


class DetectionTensors:
    """Letterboxed images [N, 3, S, S] uint8 and, per image, boxes xyxy in letterbox pixels + class indices, the
    letterbox scale and the image's extent (width, height) in letterbox pixels (detections are clipped to it)."""

    def __init__(self, root: Path, entries: list[dict], classes: list[str], size: int):
        index = {c: i for i, c in enumerate(classes)}
        images, self.boxes, self.labels, self.scales, self.extents = [], [], [], [], []
        for e in entries:
            original = load_rgb(root / e["file"])
            img, scale, _ = letterbox(original, size)
            self.extents.append((original.width * scale, original.height * scale))
            images.append(torch.from_numpy(np.asarray(img, np.uint8).copy()).permute(2, 0, 1))
            b = np.array([[x, y, x + w, y + h] for x, y, w, h in (bx["bbox"] for bx in e["boxes"])], np.float32).reshape(-1, 4)
            self.boxes.append(torch.from_numpy(b * scale))
            self.labels.append(torch.tensor([index[bx["label"]] for bx in e["boxes"]], dtype=torch.long))
            self.scales.append(scale)
        self.images = torch.stack(images) if images else torch.zeros(0, 3, size, size, dtype=torch.uint8)
        self.size = size

    def __len__(self) -> int:
        return len(self.images)


def augment_batch(images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor], generator: torch.Generator,
                  hflip: float = 0.5) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per image: random scale in SCALE_RANGE about a random point and a horizontal flip, one affine warp
    (grid_sample) for pixels and boxes alike; boxes left mostly outside are dropped, the rest clipped."""
    n, _, size, _ = images.shape
    u = torch.rand(n, 4, generator=generator)
    scale = SCALE_RANGE[0] + u[:, 0] * (SCALE_RANGE[1] - SCALE_RANGE[0])
    flip = u[:, 1] < hflip
    shift = (u[:, 2:] * 2 - 1) * (1 - 1 / scale.clamp(min=1))[:, None].clamp(min=0) + (u[:, 2:] * 2 - 1) * 0.1
    theta = torch.zeros(n, 2, 3)  # output -> input sampling in normalised coordinates
    theta[:, 0, 0] = torch.where(flip, -1.0, 1.0) / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    filled = F.grid_sample(torch.ones(n, 1, size, size), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    out = out + (1 - filled) * PAD
    targets = []
    for i in range(n):
        b = boxes[i].clone()
        if len(b):
            # input pixel p maps to output: o = ((p_norm - shift) * scale), flipped in x when asked
            norm = b / size * 2 - 1
            xs, ys = (norm[:, [0, 2]] - shift[i, 0]) * scale[i], (norm[:, [1, 3]] - shift[i, 1]) * scale[i]
            if flip[i]:
                xs = -xs.flip(1)
            b = torch.cat([xs[:, :1], ys[:, :1], xs[:, 1:], ys[:, 1:]], 1)
            b = (b + 1) / 2 * size
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            c = b.clamp(0, size)
            kept = ((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]) > 0.5 * area) & (c[:, 2] - c[:, 0] >= 2) & (c[:, 3] - c[:, 1] >= 2)
            targets.append((c[kept], labels[i][kept]))
        else:
            targets.append((b, labels[i]))
    return out, targets


class DetectionTrainer(Trainer):
    """The engine's loop (schedule, time budget, early stopping, checkpoints, resume, events) for a detector;
    the tracked validation metric is mAP@0.5 (reported as `val_map50` and the shared `val_metric`)."""

    metric = "map50"

    def __init__(self, cfg, model, train: DetectionTensors, val: DetectionTensors, preprocessing: dict, run_dir: Path,
                 classes: list[str], **kwargs):
        super().__init__(cfg, model, train, val, preprocessing, run_dir, **kwargs)
        self.classes = classes
        self.spec = postprocessing_spec(classes, train.size)
        c, s = locations([tuple(x) for x in self.spec["feature_sizes"]])
        self.centers, self.strides = torch.from_numpy(c), torch.from_numpy(s)

    def epoch_batches(self, generator: torch.Generator):
        order = torch.randperm(len(self.train), generator=generator)
        for first in range(0, len(order), self.cfg.batch_size):
            idx = self.group.shard(order[first:first + self.cfg.batch_size].tolist())  # a data-parallel rank's share
            yield self.train.images[idx], ([self.train.boxes[i] for i in idx], [self.train.labels[i] for i in idx]), len(idx)

    def train_step(self, images: torch.Tensor, targets, generator: torch.Generator, start: float) -> float:
        """Augment pixels and boxes together, then one step of the FCOS loss (gradients clipped at norm 10)."""
        images, boxes = augment_batch(images, *targets, generator, self.cfg.hflip)
        x = (images / 255.0 - self.mean) / self.std
        self.scheduled_lr(start)
        loss = detection_loss(self.model(x), boxes, self.centers, self.strides, len(self.classes))["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.group.average_gradients(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.optimizer.step()
        self.state.step += 1
        return float(loss.detach())

    def evaluate_metric(self) -> float:
        return evaluate_detector(self.model, self.val, self.spec, self.mean, self.std)["map50"]


@torch.no_grad()
def evaluate_detector(model: torch.nn.Module, data: DetectionTensors, spec: dict, mean: torch.Tensor, std: torch.Tensor,
                      batch_size: int = 32) -> dict:
    """COCO metrics of `model` on `data` (letterbox coordinates), plus the detections per image (clipped to the
    image, as served: the padding is not part of it)."""
    was_training = model.training
    model.eval()
    detections, gt = {}, {}
    for first in range(0, len(data), batch_size):
        x = (data.images[first:first + batch_size].float() / 255.0 - mean.cpu()) / std.cpu()
        raw = model(x.to(next(model.parameters()).device)).cpu().numpy()
        for j, out in enumerate(raw):
            found = clip_detections(decode(out, spec), *data.extents[first + j])
            detections[first + j] = [(d["index"], [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]],
                                      d["score"]) for d in found]
    for i in range(len(data)):
        gt[i] = [(int(k), [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])])
                 for b, k in zip(data.boxes[i].tolist(), data.labels[i].tolist())]
    model.train(was_training)
    metrics = coco_metrics(gt, detections, spec["classes"]) if len(data) else {"map": 0.0, "map50": 0.0}
    return {**metrics, "detections": detections}


def detection_preprocessing(size: int) -> dict:
    return {"resize": [size, size], "resize_mode": "letterbox", "pad_value": PAD, "interpolation": "bilinear",
            "color": "RGB", "layout": "NCHW", "scale": 1 / 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def detector_imagenet_available(arch: str) -> bool:
    """Whether detector `arch` offers an ImageNet backbone and its weights are on this machine."""
    return DETECTORS.get(arch).load_imagenet is not None and arch in MODELS.names() and imagenet_weights_available(arch)


def load_detector_imagenet(model: torch.nn.Module, arch: str) -> dict:
    """ImageNet weights into the detector's backbone (the FPN and head start fresh); never downloads."""
    spec = DETECTORS.get(arch)
    if spec.load_imagenet is None:
        raise UnsupportedSpecError(f"Detector {arch!r} has no ImageNet backbone weights here.",
                                   fix="Use --model efficientnet_lite0 for a pretrained backbone, or --pretrained none.")
    return spec.load_imagenet(model.backbone)


def evaluate_detection_split(model: torch.nn.Module, meta: dict, root: Path, entries: list[dict],
                             save_predictions: str | Path | None = None) -> dict:
    """COCO metrics of a detector on `entries`; optionally the predictions as a COCO results list
    (file_name, category_name, bbox [x, y, w, h] in the original image's pixels, score)."""
    if not entries:
        raise DatasetError("The split to evaluate is empty.", fix="Pick another split (train, val or test).")
    pre, classes = meta["preprocessing"], meta["classes"]
    data = DetectionTensors(root, entries, classes, pre["resize"][0])
    mean, std = (torch.tensor(pre[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    result = evaluate_detector(model, data, meta["postprocessing"], mean, std)
    detections = result.pop("detections")
    predictions = [{"file_name": entries[i].get("source", entries[i]["file"]), "category_name": classes[k],
                    "bbox": _clip([v / data.scales[i] for v in box], entries[i]["width"], entries[i]["height"]),
                    "score": round(score, 6)}
                   for i, dets in detections.items() for k, box, score in dets]
    if save_predictions:
        atomic_write_json(Path(save_predictions), predictions)
    return {"metrics": result, "images": [e.get("source", e["file"]) for e in entries], "predictions": len(predictions),
            "predictions_file": str(save_predictions) if save_predictions else None}


def _clip(box: list[float], width: int, height: int) -> list[float]:
    """An xywh box clipped to the image, rounded to 1/1000 px."""
    x1, y1 = min(max(box[0], 0), width), min(max(box[1], 0), height)
    x2, y2 = min(max(box[0] + box[2], 0), width), min(max(box[1] + box[3], 0), height)
    return [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
