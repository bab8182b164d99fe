"""The OCR model at work: the detector, the cropping and the recognizer composed on a picture, whatever runs the
two networks (PyTorch modules in training and evaluation, exported artifacts in serving and the benchmarks: each is
a callable on NCHW float32 arrays), with the time each stage took; and the scores of such a reader on a dataset.

Pre-processing is pinned here and stored in the model's metadata: the detector sees the picture resized so its
long side is `det_side` (each side a multiple of 32), ImageNet mean and std; the recognizer sees each rectified
crop `rec_height` pixels high, its aspect ratio kept (width a multiple of the recognizer's stride `rec_multiple`, at
least `rec_height`), scaled to [-1, 1], zero-padded on the right to the widest crop of its batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from factory.tasks.base import IMAGENET_MEAN, IMAGENET_STD
from factory.tasks.ocr.metrics import DONT_CARE, detection_scores, end_to_end_scores, recognition_scores
from factory.tasks.ocr.postprocess import ctc_decode, db_boxes, reading_order, rectify
Network = Callable[[np.ndarray], np.ndarray]


def detector_input(image: Image.Image, side: int) -> np.ndarray:
    scale = side / max(image.size)
    w, h = (max(32, int(round(v * scale / 32)) * 32) for v in image.size)
    pixels = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)


def crop_width(width: float, height: float, rec_height: int, max_width: int = 640, multiple: int = 4) -> int:
    """A crop's width at `rec_height` px high, its aspect ratio kept: a multiple of `multiple` (one time step
    each), at least `rec_height`, at most `max_width`."""
    return min(max_width, max(rec_height, int(round(width * rec_height / max(height, 1) / multiple)) * multiple))


def recognizer_input(crops: list[Image.Image], height: int, max_width: int = 640,
                     multiple: int = 4) -> tuple[np.ndarray, list[int]]:
    widths = [crop_width(c.width, c.height, height, max_width, multiple) for c in crops]
    batch = np.zeros((len(crops), 3, height, max(widths, default=height)), np.float32)
    for i, (c, w) in enumerate(zip(crops, widths)):
        pixels = np.asarray(c.convert("RGB").resize((w, height), Image.Resampling.BILINEAR), np.float32) / 255
        batch[i, :, :, :w] = ((pixels - 0.5) / 0.5).transpose(2, 0, 1)
    return batch, widths


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@dataclass
class Reader:
    detector: Network  # (1, 3, H, W) -> (1, 1, H, W) text probability
    recognizer: Network  # (N, 3, rec_height, W) -> (N, W / rec_multiple, classes) logits
    alphabet: list[str]
    det_side: int = 640
    rec_height: int = 32
    db: dict | None = None  # db_boxes' options (thresh, box_thresh, unclip_ratio, ...) where not its defaults
    rec_multiple: int = 4  # the recognizer's stride: crop widths are multiples of it

    def recognizer_input(self, crop: Image.Image) -> np.ndarray:
        """One crop as the recognizer reads it: (1, 3, rec_height, W)."""
        return recognizer_input([crop], self.rec_height, multiple=self.rec_multiple)[0]

    def recognize(self, crops: list[Image.Image]) -> list[dict]:
        """Each crop's text, one crop at a time at its own width (a padded batch would read its padding too)."""
        return [self.decode(self.recognizer(self.recognizer_input(c))[0]) for c in crops]

    def decode(self, logits: np.ndarray) -> dict:
        """One crop's recognizer logits (T, classes) -> {text, score, char_scores}."""
        return ctc_decode(_softmax(np.asarray(logits, np.float32)[None]), self.alphabet)[0]

    def probability(self, image: Image.Image) -> np.ndarray:
        """The detector's text probability map of `image` (H, W), at the detector's input size."""
        return np.asarray(self.detector(detector_input(image, self.det_side)), np.float32)[0, 0]

    def boxes(self, image: Image.Image, prob: np.ndarray) -> list[dict]:
        """The text boxes of a probability map, in `image`'s pixels ({points, score})."""
        return db_boxes(prob, image.width, image.height, **(self.db or {}))

    def crops(self, image: Image.Image, boxes: list[dict]) -> list[Image.Image]:
        return [rectify(image, b["points"], self.rec_height) for b in boxes]

    @staticmethod
    def lines(boxes: list[dict], texts: list[dict]) -> list[dict]:
        """Boxes with what was read in them, in reading order ({points, text, score, box_score})."""
        return reading_order([{"points": b["points"], "text": t["text"], "score": t["score"], "box_score": b["score"]}
                              for b, t in zip(boxes, texts)])

    def read(self, image: Image.Image) -> tuple[list[dict], dict[str, float]]:
        """The text lines of `image` in reading order ({points, text, score, box_score}), and ms per stage. Every
        box found is a line, also one read as empty text (`served` leaves those out; detection scores count them)."""
        t0 = time.perf_counter()
        boxes = self.boxes(image, self.probability(image))
        t1 = time.perf_counter()
        crops = self.crops(image, boxes)
        t2 = time.perf_counter()
        texts = self.recognize(crops)
        t3 = time.perf_counter()
        return self.lines(boxes, texts), {"detection_ms": (t1 - t0) * 1e3, "cropping_ms": (t2 - t1) * 1e3,
                                          "recognition_ms": (t3 - t2) * 1e3}


def served(lines: list[dict]) -> list[dict]:
    """The lines a reader returns to people: those read as some text."""
    return [line for line in lines if line["text"]]


def score_scenes(reader: Reader, images: dict[str, Image.Image], truth: dict[str, list[dict]]) -> dict:
    """det scores of `reader`'s boxes and e2e scores of its served lines on scenes (name -> image, name -> regions),
    rec on the ground-truth regions' crops, the mean time per stage, and what it found (`found`: served lines per
    image; `read`: (truth, read) per region)."""
    boxes, found, times = {}, {}, []
    for name, image in images.items():
        boxes[name], ms = reader.read(image)
        found[name] = served(boxes[name])
        times.append(ms)
    pairs = [(r["text"], rectify(images[n], r["points"], reader.rec_height)) for n, regions in truth.items()
             for r in regions if r["text"] != DONT_CARE]
    read = [t["text"] for t in reader.recognize([c for _, c in pairs])]
    return {"det": {k: v for k, v in detection_scores(truth, boxes).items() if k in ("precision", "recall", "hmean")},
            "rec": recognition_scores([t for t, _ in pairs], read), "e2e": end_to_end_scores(truth, found),
            "images": len(images), "ms_per_image": {k: float(np.mean([t[k] for t in times])) for k in times[0]} if times else {},
            "found": found, "read": [(t, r) for (t, _), r in zip(pairs, read)]}
