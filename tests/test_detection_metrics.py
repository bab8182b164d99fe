"""COCO-style detection metrics agree with pycocotools on the same predictions (within 1e-3)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from factory.tasks.detection.metrics import box_iou, coco_metrics

CLASSES = ["cat", "dog", "bird"]


def scene(seed: int, images: int = 40):
    """Random ground truth of every size, and detections: jittered true boxes, misses, duplicates, false alarms."""
    rng = np.random.default_rng(seed)
    gt, dt = {}, {}
    for image in range(images):
        boxes = []
        for _ in range(rng.integers(0, 6)):
            w, h = rng.choice([rng.uniform(4, 30), rng.uniform(33, 90), rng.uniform(100, 300)], 2)
            boxes.append((int(rng.integers(0, 3)), [float(rng.uniform(0, 400)), float(rng.uniform(0, 400)), float(w), float(h)]))
        gt[image] = boxes
        dets = []
        for k, (x, y, w, h) in boxes:
            if rng.random() < 0.15:
                continue  # a miss
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            label = k if rng.random() > 0.1 else int(rng.integers(0, 3))
            dets.append((label, [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])], float(rng.random())))
            if rng.random() < 0.2:  # a duplicate
                dets.append((label, [x + 2, y + 2, w, h], float(rng.random() * 0.5)))
        for _ in range(rng.integers(0, 3)):  # false alarms
            dets.append((int(rng.integers(0, 3)), [float(rng.uniform(0, 400)), float(rng.uniform(0, 400)),
                                                  float(rng.uniform(5, 120)), float(rng.uniform(5, 120))], float(rng.random())))
        dt[image] = dets
    return gt, dt


def pycocotools_stats(gt: dict, dt: dict) -> tuple[np.ndarray, np.ndarray]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = COCO()
    anns, ann_id = [], 1
    for image, boxes in gt.items():
        for k, box in boxes:
            anns.append({"id": ann_id, "image_id": image, "category_id": k + 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
            ann_id += 1
    coco.dataset = {"images": [{"id": i} for i in gt], "annotations": anns,
                    "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        results = [{"image_id": image, "category_id": k + 1, "bbox": box, "score": s} for image, dets in dt.items() for k, box, s in dets]
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, ev.eval["precision"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_pycocotools(seed: int):
    pytest.importorskip("pycocotools", reason="pycocotools is a test dependency (scripts/setup installs it)")
    gt, dt = scene(seed)
    ours = coco_metrics(gt, dt, CLASSES)
    stats, precision = pycocotools_stats(gt, dt)
    assert ours["map"] == pytest.approx(stats[0], abs=1e-3)
    assert ours["map50"] == pytest.approx(stats[1], abs=1e-3)
    assert ours["map75"] == pytest.approx(stats[2], abs=1e-3)
    for i, size in enumerate(("small", "medium", "large")):
        assert ours["by_size"][size]["ap"] == pytest.approx(stats[3 + i], abs=1e-3), size
        assert ours["by_size"][size]["recall"] == pytest.approx(stats[9 + i], abs=1e-3), size
    for c, name in enumerate(CLASSES):  # per-class AP: pycocotools' precision array [T, R, K, A, M]
        p = precision[:, :, c, 0, 2]
        assert ours["per_class"][name]["ap"] == pytest.approx(p[p > -1].mean(), abs=1e-3), name
        assert ours["per_class"][name]["ap50"] == pytest.approx(p[0][p[0] > -1].mean(), abs=1e-3), name


def test_perfect_and_empty_predictions():
    gt = {0: [(0, [10, 10, 50, 50])], 1: [(1, [0, 0, 200, 100])]}
    perfect = {0: [(0, [10, 10, 50, 50], 0.9)], 1: [(1, [0, 0, 200, 100], 0.8)]}
    assert coco_metrics(gt, perfect, ["a", "b"])["map"] == pytest.approx(1.0)
    assert coco_metrics(gt, {}, ["a", "b"])["map"] == 0.0
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10]]))[0, 0] == pytest.approx(50 / 150)
