"""The OCR networks and the detector's targets: the DB maps of hand-made polygons (kernel inside the text,
don't-care and tiny text masked out, threshold map in 0.3-0.7 on the border), the shapes both networks give
(the exported detector returns the probability map only; the recognizer gives width / 4 time steps at any width),
and a tiny detector and recognizer that learn a few synthetic images until the post-processing reads them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from shapely.geometry import Point, Polygon

from factory.tasks.ocr.metrics import detection_scores, recognition_scores
from factory.tasks.ocr.model import CTCRecognizer, DBDetector, TinyBackbone, db_loss, db_targets
from factory.tasks.ocr.postprocess import ctc_decode, db_boxes
from factory.tasks.ocr.synthetic import crop, scene


def quad(x1, y1, x2, y2, text="word"):
    return {"points": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "text": text}


def test_db_targets_of_hand_made_polygons():
    maps = db_targets([quad(10, 10, 110, 40), quad(10, 60, 60, 90, "###"), quad(70, 60, 90, 65)], 100, 128)
    kernel = Polygon([[10, 10], [110, 10], [110, 40], [10, 40]])
    ys, xs = np.nonzero(maps["shrink"])
    assert all(kernel.contains(Point(x + 0.5, y + 0.5)) for x, y in zip(xs, ys))
    # shrunk by A (1 - 0.4^2) / L = 3000 * 0.84 / 260 = 9.7 px on each side
    assert xs.min() >= 19 and xs.max() <= 100 and ys.min() >= 19 and ys.max() <= 30
    assert maps["shrink_mask"][75, 30] == 0 and maps["shrink_mask"][62, 80] == 0  # ### and 5 px high text
    assert maps["shrink_mask"][25, 50] == 1 and maps["thresh_mask"][25, 5] == 1 and maps["thresh_mask"][75, 30] == 0
    assert maps["thresh"].min() >= 0.3 - 1e-6 and maps["thresh"].max() <= 0.7 + 1e-6
    assert maps["thresh"][10, 50] > 0.65 and maps["thresh"][25, 50] == np.float32(0.3)  # the border high, the middle low


def test_the_networks_shapes():
    det = DBDetector(TinyBackbone(8), [8, 16, 32, 32], 16)
    x = torch.zeros(2, 3, 96, 160)
    prob, thresh, binary = det.train()(x)
    assert prob.shape == thresh.shape == binary.shape == (2, 1, 96, 160)
    det.export_mode = True
    assert det.eval()(x).shape == (2, 1, 96, 160)
    rec = CTCRecognizer(11, 32, 8).eval()
    assert rec(torch.zeros(1, 3, 32, 100)).shape == (1, 25, 11) and rec(torch.zeros(3, 3, 32, 256)).shape == (3, 64, 11)


def _image(img) -> torch.Tensor:
    return torch.tensor(np.asarray(img, np.float32).transpose(2, 0, 1) / 255 - 0.5)


@pytest.mark.slow  # 150 training steps (15-30 s here); the default job keeps the shapes and targets
def test_a_tiny_detector_learns_two_scenes_until_db_post_processing_finds_their_words():
    torch.manual_seed(0)
    scenes = [scene(random.Random(i), 192, 128, ("en",), max_regions=3, max_angle=6) for i in range(2)]
    x = torch.stack([_image(s.image) for s in scenes])
    maps = [db_targets(s.regions, 128, 192) for s in scenes]
    targets = {k: torch.tensor(np.stack([m[k] for m in maps])) for k in maps[0]}
    det = DBDetector(TinyBackbone(16), [16, 32, 64, 64], 64)
    opt = torch.optim.Adam(det.parameters(), 5e-3)
    for _ in range(150):
        det.train()
        loss = db_loss(det(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        prob = det.eval()(x)[:, 0].numpy()
    found = {i: db_boxes(prob[i], 192, 128) for i in range(2)}
    assert detection_scores({i: s.regions for i, s in enumerate(scenes)}, found)["hmean"] >= 0.8


@pytest.mark.slow  # 150 training steps
def test_a_tiny_recognizer_learns_a_few_words_with_ctc():
    torch.manual_seed(0)
    rng = random.Random(3)
    crops = [crop(rng, ("en",), 32) for _ in range(4)]
    alphabet = sorted({c for _, text in crops for c in text})
    widths = [max(32, round(img.width * 32 / img.height / 4) * 4) for img, _ in crops]
    x = torch.zeros(len(crops), 3, 32, max(widths))
    for i, ((img, _), w) in enumerate(zip(crops, widths)):
        x[i, :, :, :w] = _image(img.resize((w, 32)))
    labels = torch.tensor([alphabet.index(c) + 1 for _, text in crops for c in text])
    rec = CTCRecognizer(len(alphabet) + 1, 32, 16)
    opt = torch.optim.Adam(rec.parameters(), 3e-3)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    for _ in range(150):
        logits = rec.train()(x).log_softmax(-1)
        loss = ctc(logits.transpose(0, 1), labels, torch.tensor(widths) // 4, torch.tensor([len(t) for _, t in crops]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        read = [ctc_decode(rec.eval()(x[i:i + 1, :, :, :w]).softmax(-1).numpy(), alphabet)[0]["text"]
                for i, w in enumerate(widths)]
    assert recognition_scores([t for _, t in crops], read)["one_minus_ned"] >= 0.8
