"""The OCR model's two networks as the export driver sees them (`Ocr.network`), each scored in the pipeline.

- The detector takes the picture at its long side `det_side` (height and width vary: a multiple of 32 each) and
  returns the text probability map. Its parity is the maps' largest difference and the agreement of the boxes read
  from them; its score is the end-to-end Hmean of its boxes read by the PyTorch recognizer.
- The recognizer takes one crop 32 px high (PP-OCRv4's: 48) at its own width and returns (T, classes) logits. Its parity is the
  agreement of the decoded strings; its score is the end-to-end Hmean of the PyTorch detector's boxes read by it
  (a recognizer-only model: word accuracy on the crops, as `eval` reports it).

So each network's own accuracy drop is counted in the pipeline's points, with the other network at FP32, and the
driver (targets.networks) then scores the two exported networks together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from factory.datasets.images import load_rgb
from factory.tasks.base import EvalSet, Network, Task
from factory.tasks.ocr.evaluation import entry_name
from factory.tasks.ocr.metrics import DONT_CARE, detection_scores, end_to_end_scores, recognition_scores
from factory.tasks.ocr.pipeline import Reader, detector_input, served
from factory.tasks.ocr.postprocess import db_boxes, rectify

# precision -> (largest |difference| allowed, least agreement): probability maps are in [0, 1]
DETECTOR_PARITY = {"fp32": (1e-3, 0.98), "fp16": (None, 0.95), "int8": (None, 0.9)}
RECOGNIZER_PARITY = {"fp32": (1e-3, 0.98), "fp16": (None, 0.95), "int8": (None, 0.8)}
REC_EXAMPLE_WIDTH = 128  # the recognizer's example input width (it takes any multiple of 4)
NOT_FOR_NETWORKS = {
    "accuracy_control": "its validation batches one input size, and an OCR network's inputs vary in size",
    "qat": "quantization-aware training runs the classification trainer",
    "prune": "structured pruning fine-tunes with the classification trainer"}


def _text_chars(entry: dict) -> set[str]:
    """The characters an entry's labels show: what INT8 calibration draws every one of."""
    texts = [entry["text"]] if "text" in entry else [r["text"] for r in entry.get("regions", []) if r["text"] != DONT_CARE]
    return {c for t in texts for c in t}


class OcrNetwork(Task):
    name = "ocr"
    metric = "e2e_hmean"
    metric_label = "end-to-end Hmean"
    unsupported_strategies = NOT_FOR_NETWORKS

    def __init__(self, reader: Reader):
        self.reader = reader  # the PyTorch networks: the other network's half of the pipeline

    def calibration_labels(self, entry: dict) -> set[str]:
        return _text_chars(entry)

    def agreement(self, outputs: list, reference: list, precision: str, table: dict, kind: str, found: float,
                  compared: int) -> dict:
        tol, least = table[precision]
        diff = max((float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in zip(outputs, reference)), default=0.0)
        scale = max((float(np.abs(b).max()) for b in reference), default=1.0)
        allowed = None if tol is None else tol * max(1.0, scale)
        ok = found >= least and (allowed is None or diff <= allowed)
        return {"checked": True, "passed": bool(ok), "max_abs_diff": diff, "agreement": found, "agreement_kind": kind,
                "compared": compared, "images": len(reference),
                "tolerance": {"max_abs_diff": allowed, "min_agreement": least}}


class DetectorNetwork(OcrNetwork):
    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        scenes = [(e, load_rgb(root / e["file"])) for e in entries if "regions" in e]
        return EvalSet([detector_input(image, self.reader.det_side)[0] for _, image in scenes],
                       [(entry_name(e), image, e["regions"]) for e, image in scenes])

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        return (1, -1, -1)

    def outputs(self, runner: Callable, inputs: list, batch: int, meta: dict) -> list[np.ndarray]:
        return [np.asarray(runner(x[None]), np.float32)[0, 0] for x in inputs]

    def score(self, outputs: list, truth: list, meta: dict) -> dict:
        boxes, found = {}, {}
        for prob, (name, image, _) in zip(outputs, truth):
            boxes[name] = self.reader.boxes(image, prob)
            found[name] = served(self.reader.lines(boxes[name], self.reader.recognize(self.reader.crops(image, boxes[name]))))
        regions = {name: r for name, _, r in truth}
        return {"e2e_hmean": end_to_end_scores(regions, found)["hmean"],
                "det": {k: v for k, v in detection_scores(regions, boxes).items() if k in ("precision", "recall", "hmean")}}

    def parity(self, outputs: list, reference: list, precision: str, meta: dict) -> dict:
        """The maps' largest difference, and how many boxes read from the file's maps match PyTorch's (Hmean at
        IoU > 0.5, both ways), in map pixels."""
        ours = {i: db_boxes(p, p.shape[1], p.shape[0], **(self.reader.db or {})) for i, p in enumerate(outputs)}
        theirs = {i: db_boxes(p, p.shape[1], p.shape[0], **(self.reader.db or {})) for i, p in enumerate(reference)}
        scores = detection_scores(theirs, ours)
        compared = scores["care_gt"] + scores["care_det"]
        return self.agreement(outputs, reference, precision, DETECTOR_PARITY, "box", scores["hmean"] if compared else 1.0,
                              compared)


class RecognizerNetwork(OcrNetwork):
    def __init__(self, reader: Reader, with_detector: bool):
        super().__init__(reader)
        self.with_detector = with_detector

    def crops(self, root: Path, entries: list[dict]) -> tuple[list[Any], dict]:
        """The crops the recognizer reads and what scores its reading: the PyTorch detector's boxes on scenes (the
        first `len(truth["boxes"])`), then the labelled crops and regions with their texts."""
        regions, owners, found, pairs = {}, [], [], []
        for e in entries:
            image = load_rgb(root / e["file"])
            if "text" in e:
                pairs.append((e["text"], image))
                continue
            pairs += [(r["text"], rectify(image, r["points"], self.reader.rec_height)) for r in e["regions"]
                      if r["text"] != DONT_CARE]
            if self.with_detector:
                boxes = self.reader.boxes(image, self.reader.probability(image))
                regions[entry_name(e)] = e["regions"]
                owners += [(entry_name(e), b) for b in boxes]
                found += self.reader.crops(image, boxes)
        return found + [c for _, c in pairs], {"regions": regions, "boxes": owners, "texts": [t for t, _ in pairs]}

    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        crops, truth = self.crops(root, entries)
        return EvalSet([self.reader.recognizer_input(c)[0] for c in crops], truth)

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        return (-1, meta["num_classes"] + 1)

    def outputs(self, runner: Callable, inputs: list, batch: int, meta: dict) -> list[np.ndarray]:
        return [np.asarray(runner(x[None]), np.float32)[0] for x in inputs]

    def score(self, outputs: list, truth: dict, meta: dict) -> dict:
        """End-to-end Hmean of the PyTorch detector's boxes as read (a recognizer-only model: word accuracy, as
        `eval` reports it), and the recognition scores on the labelled crops."""
        read = [self.reader.decode(logits)["text"] for logits in outputs]
        n = len(truth["boxes"])
        rec = recognition_scores(truth["texts"], read[n:])
        if not self.with_detector:
            return {"e2e_hmean": rec["word_accuracy"], "rec": rec}
        found: dict[str, list[dict]] = {name: [] for name in truth["regions"]}
        for (name, box), text in zip(truth["boxes"], read):
            found[name].append({"points": box["points"], "text": text})
        e2e = end_to_end_scores(truth["regions"], {name: served(lines) for name, lines in found.items()})
        return {"e2e_hmean": e2e["hmean"], "rec": rec}

    def parity(self, outputs: list, reference: list, precision: str, meta: dict) -> dict:
        """The logits' largest difference, and the share of crops whose decoded strings are the same."""
        same = [self.reader.decode(a)["text"] == self.reader.decode(b)["text"] for a, b in zip(outputs, reference)]
        return self.agreement(outputs, reference, precision, RECOGNIZER_PARITY, "string",
                              float(np.mean(same)) if same else 1.0, len(same))


def ocr_network(model: nn.Module, meta: dict, name: str, reader: Reader) -> Network:
    """Network `name` ("detector" or "recognizer") of the OCR `model`, with the metadata its export reads: an example
    input size and the axes that vary (the detector's height and width, the recognizer's width and time steps)."""
    if name == "detector":
        side = reader.det_side
        return Network(model.detector, {**meta, "network": name, "input_size": [3, side, side],
                                        "dynamic_axes": {"input": [2, 3], "output": [2, 3]}}, DetectorNetwork(reader))
    return Network(model.recognizer, {**meta, "network": name, "input_size": [3, reader.rec_height, REC_EXAMPLE_WIDTH],
                                      "dynamic_axes": {"input": [3], "output": [1]}},
                   RecognizerNetwork(reader, model.detector is not None))
