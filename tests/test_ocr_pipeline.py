"""The OCR reader's plumbing with oracle networks: a detector that answers the ground truth's DB kernels at the
size it is given and a recognizer that answers the expected texts as CTC logits. Pictures resized for the
detector, boxes scaled back, crops rectified and read, lines in reading order, and every score 1.0 end to end; a
recognizer that reads wrong texts keeps the detection scores and loses the end-to-end ones."""

from __future__ import annotations

import random
from collections import deque

import numpy as np

from factory.tasks.ocr.metrics import iou, polygon
from factory.tasks.ocr.model import db_targets
from factory.tasks.ocr.pipeline import Reader, detector_input, score_scenes
from factory.tasks.ocr.postprocess import db_boxes
from factory.tasks.ocr.synthetic import scene


def oracle_detector(regions: list[dict], width: int, height: int):
    def detect(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        scaled = [{"points": (np.asarray(r["points"]) * [w / width, h / height]).tolist(), "text": r["text"]} for r in regions]
        return (db_targets(scaled, h, w)["shrink"] * 0.95)[None, None]
    return detect


def ctc_logits(text: str, alphabet: list[str], steps: int) -> np.ndarray:
    logits = np.zeros((1, steps, len(alphabet) + 1), np.float32)
    logits[0, :, 0] = 10
    for i, c in enumerate(text):  # char, blank, char, blank ...
        logits[0, 2 * i, 0], logits[0, 2 * i, alphabet.index(c) + 1] = 0, 10
    return logits


def test_oracle_networks_read_every_scene_perfectly_and_wrong_texts_cost_only_end_to_end():
    scenes = {f"s{i}.jpg": scene(random.Random(40 + i), 320, 240, ("en", "zh"), max_angle=5) for i in range(3)}
    alphabet = sorted({c for s in scenes.values() for r in s.regions for c in r["text"]})
    expected: deque[str] = deque()
    for s in scenes.values():  # the order the reader asks: each picture's boxes, then every true region's crop
        x = detector_input(s.image, 320)
        prob = oracle_detector(s.regions, *s.image.size)(x)[0, 0]
        for box in db_boxes(prob, *s.image.size):
            best = max(s.regions, key=lambda r: iou(polygon(r["points"]), polygon(box["points"])))
            expected.append(best["text"])
    expected += [r["text"] for s in scenes.values() for r in s.regions]
    queue = deque(expected)

    current = {}

    def detector(x):
        return oracle_detector(current["scene"].regions, *current["scene"].image.size)(x)

    def recognizer(batch):
        return ctc_logits(queue.popleft(), alphabet, batch.shape[-1] // 4)

    class Images(dict):  # the oracle detector needs to know which scene it is looking at
        def items(self):
            for name, s in scenes.items():
                current["scene"] = s
                yield name, s.image

    reader = Reader(detector, recognizer, alphabet, det_side=320)
    images = Images({n: s.image for n, s in scenes.items()})
    out = score_scenes(reader, images, {n: s.regions for n, s in scenes.items()})
    assert out["det"] == {"precision": 1.0, "recall": 1.0, "hmean": 1.0}, out
    assert out["e2e"] == {"hmean": 1.0, "hmean_caseless": 1.0} and out["rec"]["word_accuracy"] == 1.0
    assert set(out["ms_per_image"]) == {"detection_ms", "cropping_ms", "recognition_ms"} and out["images"] == 3
    assert not queue  # every crop was read once

    queue.extend(alphabet[0] * len(t) for t in expected)
    wrong = score_scenes(reader, images, {n: s.regions for n, s in scenes.items()})
    assert wrong["det"]["hmean"] == 1.0 and wrong["e2e"]["hmean"] == 0.0 and wrong["rec"]["cer"] > 0.5
