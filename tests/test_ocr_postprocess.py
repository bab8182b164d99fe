"""OCR post-processing: minimum-area rectangles against OpenCV's, DB boxes against PaddleOCR's algorithm written
with the field's tools (cv2.findContours / minAreaRect / fillPoly and pyclipper's unclip), the thresholds, the
scaling to the image, CTC greedy decoding and the reading order, on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon

from factory.tasks.ocr.postprocess import ctc_decode, db_boxes, min_area_rect, reading_order

cv2 = pytest.importorskip("cv2")
pyclipper = pytest.importorskip("pyclipper")


def rect(cx, cy, w, h, degrees):
    t = np.radians(degrees)
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return corners @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + [cx, cy]


def paddle_db(prob, width, height, thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, min_size=3):
    """PaddleOCR's DBPostProcess (quad mode, fast score), as ppocr/postprocess/db_postprocess.py does it."""
    bitmap = (prob > thresh).astype(np.uint8) * 255
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours:
        box, side = mini_box(contour)
        if side < min_size:
            continue
        mask = np.zeros_like(bitmap)
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
        score = cv2.mean(prob, mask)[0]
        if score < box_thresh:
            continue
        poly = Polygon(box)
        offset = pyclipper.PyclipperOffset()
        offset.AddPath(np.round(box).astype(int).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        grown = np.array(offset.Execute(poly.area * unclip_ratio / poly.length)[0])
        box, side = mini_box(grown.reshape(-1, 1, 2).astype(np.float32))
        if side < min_size + 2:
            continue
        out.append({"points": np.clip(np.round(box * [width / prob.shape[1], height / prob.shape[0]]), 0, [width, height]),
                    "score": score})
    return out


def mini_box(contour):
    rect_ = cv2.minAreaRect(contour)
    return cv2.boxPoints(rect_), min(rect_[1])


def iou(a, b) -> float:
    pa, pb = Polygon(a), Polygon(b)
    return pa.intersection(pb).area / pa.union(pb).area


@pytest.mark.parametrize("angle", [0, 7, 23, 45, 70])
def test_min_area_rect_matches_opencv(angle: float):
    rng = np.random.default_rng(int(angle))
    points = rng.uniform(-1, 1, (200, 2)) * [60, 12]
    t = np.radians(angle)
    points = points @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + [100, 80]
    corners, w, h = min_area_rect(points)
    (_, _), (cw, ch), _ = cv2.minAreaRect(points.astype(np.float32))
    assert w * h == pytest.approx(cw * ch, rel=1e-3)
    assert iou(corners, cv2.boxPoints(cv2.minAreaRect(points.astype(np.float32)))) > 0.999
    assert corners[0][0] <= corners[1][0] and corners[0][1] <= corners[3][1]  # clockwise from the top-left


def test_db_boxes_match_paddleocrs_algorithm_on_rotated_text_kernels():
    prob = np.zeros((160, 200), np.float32)
    kernels = [rect(60, 40, 80, 14, 0), rect(130, 100, 90, 16, 15), rect(50, 125, 50, 12, -30)]
    for k in kernels:
        cv2.fillPoly(prob, [np.round(k).astype(np.int32)], 0.9)
    ours = db_boxes(prob, 400, 320)
    theirs = paddle_db(prob, 400, 320)
    assert len(ours) == len(theirs) == 3
    for mine in ours:
        best = max(theirs, key=lambda other: iou(mine["points"], other["points"]))
        # the score: ours averages the pixel centres inside the rectangle, PaddleOCR fills the rounded rectangle
        # (edge pixels outside the kernel included), so a turned box scores a little lower there
        assert iou(mine["points"], best["points"]) > 0.9 and mine["score"] == pytest.approx(best["score"], abs=0.1)
    for k in kernels:  # the boxes are the kernels grown by the unclip distance, in the image's pixels (x2)
        grown = Polygon(k * 2).buffer(Polygon(k).area * 1.5 / Polygon(k).length * 2, join_style=2)
        assert max(iou(np.array(grown.exterior.coords)[:-1], b["points"]) for b in ours) > 0.85


def test_db_thresholds_drop_faint_and_thin_regions():
    prob = np.zeros((100, 100), np.float32)
    cv2.fillPoly(prob, [np.round(rect(30, 30, 40, 12, 0)).astype(np.int32)], 0.45)  # above thresh, under box_thresh
    prob[70:72, 10:90] = 0.95  # 2 px high: under min_size
    cv2.fillPoly(prob, [np.round(rect(60, 50, 40, 12, 0)).astype(np.int32)], 0.95)
    boxes = db_boxes(prob, 100, 100)
    assert len(boxes) == 1 and boxes[0]["score"] > 0.9
    assert db_boxes(np.zeros((32, 32)), 32, 32) == [] and db_boxes(prob, 100, 100, box_thresh=0.4)[1:]


def test_ctc_greedy_decoding_collapses_repeats_and_drops_blanks():
    alphabet = ["a", "b", "价"]
    steps = [1, 1, 0, 1, 2, 2, 0, 3]  # a a - a b b - 价
    probs = np.full((1, len(steps), 4), 0.02)
    for t, c in enumerate(steps):
        probs[0, t, c] = 0.9 - 0.1 * (t == 3)
    (line,) = ctc_decode(probs, alphabet)
    assert line["text"] == "aab价" and line["char_scores"] == pytest.approx([0.9, 0.8, 0.9, 0.9])
    assert line["score"] == pytest.approx(0.875)
    assert ctc_decode(np.eye(4)[[0, 0]][None], alphabet) == [{"text": "", "score": 0.0, "char_scores": []}]


def test_reading_order_is_rows_top_to_bottom_then_left_to_right():
    def line(x, y, name):
        return {"points": [[x, y], [x + 40, y], [x + 40, y + 12], [x, y + 12]], "text": name}

    lines = [line(100, 52, "total"), line(10, 10, "shop"), line(10, 50, "price"), line(100, 8, "name"), line(10, 90, "end")]
    assert [x["text"] for x in reading_order(lines)] == ["shop", "name", "price", "total", "end"]


def test_a_turned_region_is_cut_out_upright():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (200, 200), "white")
    corners = rect(100, 100, 120, 30, 20)
    ImageDraw.Draw(img).polygon([tuple(p) for p in corners], fill="black")
    ImageDraw.Draw(img).ellipse((95, 95, 105, 105), fill="red")  # the middle marked
    from factory.tasks.ocr.postprocess import order_corners, rectify

    out = rectify(img, order_corners(corners), 32)
    assert out.height == 32 and out.width == round(120 * 32 / 30)
    pixels = np.asarray(out.convert("L"), np.float32)
    assert pixels[2:-2, 2:-2].mean() < 60  # all of it is the black region, upright
    red = np.asarray(out)[..., 0].astype(int) - np.asarray(out)[..., 1]
    ys, xs = np.nonzero(red > 100)
    assert abs(xs.mean() - out.width / 2) < 3 and abs(ys.mean() - 16) < 3
    tall = rectify(img, order_corners(rect(100, 100, 20, 80, 0)), 32)
    assert tall.height == 32 and tall.width == 128  # vertical text turned to read along the width
