"""The detector's pieces: every registered backbone gives one raw [batch, locations, classes + 5]
tensor; NumPy NMS equals torchvision's; decoding the training targets gives the boxes back; target
assignment puts each box on its level; and a tiny detector overfits one synthetic scene until the
shared post-processing finds its boxes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from factory.tasks.detection.datasets import synthetic_scene
from factory.tasks.detection import (DETECTORS, assign_targets, build_detector, decode, detection_loss, feature_sizes,
                                     letterbox, locations, nms, postprocessing_spec, unletterbox)
from factory.tasks.detection.metrics import box_iou


@pytest.mark.parametrize("arch", sorted(DETECTORS.names()))
def test_every_detector_outputs_one_raw_tensor(arch: str):
    model = build_detector(arch, 4).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 96, 96))
    assert out.shape == (2, sum(h * w for h, w in feature_sizes(96)), 4 + 5)


def test_numpy_nms_equals_torchvision():
    from torchvision.ops import nms as tv_nms

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (300, 2))], 1).astype(np.float32)
    scores = rng.random(300).astype(np.float32)
    for iou in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, iou).tolist() == tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).tolist()


def test_targets_decode_back_to_their_boxes():
    size, classes = 128, ["a", "b"]
    spec = postprocessing_spec(classes, size)
    centers, strides = locations([tuple(s) for s in spec["feature_sizes"]])
    boxes = torch.tensor([[10.0, 12.0, 40.0, 44.0], [50.0, 20.0, 126.0, 120.0]])
    cls, ltrb, pos = assign_targets(boxes, torch.tensor([0, 1]), torch.from_numpy(centers), torch.from_numpy(strides), 2)
    assert pos.any() and (cls.sum(1)[pos] == 1).all()
    small, large = pos & (cls[:, 0] == 1), pos & (cls[:, 1] == 1)
    assert set(strides[small.numpy()].tolist()) == {8.0} and large.any()  # the 30 px box on the finest level
    raw = np.full((len(centers), 2 + 5), -10.0, np.float32)  # what a perfect network would output
    p = pos.numpy()
    raw[p, :2] = np.where(cls[p].numpy() > 0, 10.0, -10.0)
    raw[p, 2:6] = np.log(ltrb[p].numpy() / strides[p, None])
    raw[p, 6] = 10.0
    found = decode(raw, spec)
    assert sorted(d["label"] for d in found) == ["a", "b"]
    ious = box_iou(np.array([[*d["box"][:2], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]] for d in found]),
                   np.array([[10, 12, 30, 32], [50, 20, 76, 100]], float))
    assert ious.max(1).min() > 0.999


def test_letterbox_round_trip():
    from PIL import Image

    img = Image.new("RGB", (200, 100))
    boxed, scale, _ = letterbox(img, 128)
    assert boxed.size == (128, 128) and scale == pytest.approx(0.64)
    back = unletterbox([{"box": [6.4, 6.4, 64.0, 32.0], "score": 1}], scale, 200, 100)
    assert back[0]["box"] == pytest.approx([10, 10, 100, 50])


def test_a_tiny_detector_overfits_one_scene():
    torch.manual_seed(0)
    img, boxes = synthetic_scene(random.Random(3), ["circle", "square", "triangle"], 128, max_objects=3)
    assert boxes
    x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None]
    classes = ["circle", "square", "triangle"]
    target = [(torch.tensor([[b.x, b.y, b.x + b.w, b.y + b.h] for b in boxes]), torch.tensor([classes.index(b.label) for b in boxes]))]
    spec = postprocessing_spec(classes, 128)
    centers, strides = (torch.from_numpy(a) for a in locations([tuple(s) for s in spec["feature_sizes"]]))
    model = build_detector("tiny_det", 3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = detection_loss(model(x), target, centers, strides, 3)
        first = first if first is not None else float(loss["loss"].detach())
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
    assert float(loss["loss"]) < first / 3
    model.eval()
    with torch.no_grad():
        found = decode(model(x)[0].numpy(), spec)
    for b in boxes:
        best = max((d for d in found if d["label"] == b.label), key=lambda d: d["score"], default=None)
        assert best is not None, b
        d = best["box"]
        assert box_iou(np.array([[d[0], d[1], d[2] - d[0], d[3] - d[1]]]), np.array([[b.x, b.y, b.w, b.h]]))[0, 0] > 0.5
