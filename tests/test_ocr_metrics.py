"""The OCR metrics on hand-worked cases: the ICDAR 2015 IoU protocol (don't-care ground truth and detections,
split and merged boxes, invalid polygons, counts summed over the set, greedy against Hungarian matching), polygon
IoU against an independent raster count, recognition scores and end-to-end H-mean."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as Outline

from factory.tasks.ocr.metrics import (detection_scores, edit_distance, end_to_end_scores, iou, match_image, polygon,
                                       recognition_scores)


def box(x1: float, y1: float, x2: float, y2: float, text: str = "word") -> dict:
    return {"points": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "text": text}


def test_a_perfect_reading_scores_one():
    truth = {"a.jpg": [box(0, 0, 100, 20), box(0, 40, 80, 60)]}
    assert detection_scores(truth, truth) == {"precision": 1.0, "recall": 1.0, "hmean": 1.0, "care_gt": 2,
                                              "care_det": 2, "matched": 2}


def test_dont_care_truth_and_the_detections_on_it_are_not_counted():
    truth = {"a.jpg": [box(0, 0, 100, 20), box(0, 40, 100, 60, "###")]}
    found = {"a.jpg": [box(0, 0, 100, 20), box(10, 42, 90, 58), box(0, 80, 50, 100)]}  # on the ###; a false one
    out = detection_scores(truth, found)
    assert (out["care_gt"], out["care_det"], out["matched"]) == (1, 2, 1)
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == 1.0 and out["hmean"] == pytest.approx(2 / 3)
    half_in = {"a.jpg": [box(0, 0, 100, 20), box(50, 40, 150, 60)]}  # half of it inside ###: exactly 0.5 is care
    assert detection_scores(truth, half_in)["care_det"] == 2


def test_a_split_word_and_merged_words_do_not_match():
    one_word = {"a.jpg": [box(0, 0, 100, 20)]}
    halves = {"a.jpg": [box(0, 0, 50, 20), box(50, 0, 100, 20)]}  # IoU 0.5 each: not above 0.5
    assert detection_scores(one_word, halves) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0, "care_gt": 1,
                                                        "care_det": 2, "matched": 0}
    two_words = {"a.jpg": [box(0, 0, 40, 20), box(60, 0, 100, 20)]}
    merged = {"a.jpg": [box(0, 0, 100, 20)]}  # IoU 0.4 with each
    assert detection_scores(two_words, merged)["matched"] == 0


def test_counts_are_summed_over_the_set_not_averaged_per_image():
    truth = {"a.jpg": [box(0, 0, 100, 20)], "b.jpg": [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10)]}
    found = {"a.jpg": [box(0, 0, 100, 20)], "b.jpg": [box(0, 50, 10, 60), box(20, 50, 30, 60), box(40, 50, 50, 60)]}
    out = detection_scores(truth, found)
    assert out["recall"] == pytest.approx(1 / 4) and out["precision"] == pytest.approx(1 / 4)  # per-image mean: 1/2
    assert detection_scores(truth, {})["care_det"] == 0 and detection_scores(truth, {})["hmean"] == 0.0


def test_invalid_polygons_are_dropped_on_both_sides():
    bowtie = {"points": [[0, 0], [100, 20], [100, 0], [0, 20]], "text": "x"}  # self-intersecting
    line = {"points": [[0, 0], [100, 0], [100, 0], [0, 0]], "text": "x"}  # no area
    assert polygon(bowtie["points"]) is None and polygon(line["points"]) is None and polygon([[0, 0], [1, 1]]) is None
    out = detection_scores({"a.jpg": [box(0, 0, 100, 20), bowtie]}, {"a.jpg": [box(0, 0, 100, 20), line, bowtie]})
    assert (out["care_gt"], out["care_det"], out["matched"]) == (1, 1, 1)


def test_greedy_matching_follows_the_rrc_script_and_hungarian_maximises_matches():
    truth = [box(0, 0, 100, 20, "A"), box(0, 0, 60, 20, "B")]
    found = [box(0, 0, 90, 20), box(10, 0, 100, 20)]  # A: IoU 0.9 with both; B: 0.67 with the first, 0.5 with the second
    greedy, pairs = match_image(truth, found)
    assert greedy.matched == 1 and pairs == [(0, 0)]
    best, pairs = match_image(truth, found, matching="hungarian")
    assert best.matched == 2 and sorted(pairs) == [(0, 1), (1, 0)]
    assert detection_scores({"a": truth}, {"a": found}, matching="hungarian")["hmean"] == 1.0


def raster_iou(a: list, b: list, step: float = 0.25) -> float:
    """IoU by counting grid points inside each polygon (matplotlib's point-in-polygon, not shapely)."""
    xs, ys = np.meshgrid(np.arange(-50, 250, step), np.arange(-50, 250, step))
    grid = np.column_stack([xs.ravel(), ys.ravel()])
    ia, ib = Outline(a).contains_points(grid), Outline(b).contains_points(grid)
    return (ia & ib).sum() / (ia | ib).sum()


@pytest.mark.parametrize("angle,shift", [(0, (10, 0)), (30, (5, 3)), (45, (0, 12)), (80, (-7, 4))])
def test_polygon_iou_of_rotated_boxes_matches_a_raster_count(angle: float, shift: tuple):
    def rotated(cx, cy, w, h, degrees):
        t = np.radians(degrees)
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        return (corners @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + [cx, cy]).tolist()

    a = rotated(100, 100, 120, 30, angle)
    b = rotated(100 + shift[0], 100 + shift[1], 110, 34, angle + 5)
    assert iou(polygon(a), polygon(b)) == pytest.approx(raster_iou(a, b), abs=0.01)


def test_recognition_scores_by_hand():
    out = recognition_scores(["Hello", "world", "ab", "价格"], ["Hello", "World", "abc", "价钱"])
    assert out["word_accuracy"] == 0.25 and out["word_accuracy_caseless"] == 0.5
    assert out["one_minus_ned"] == pytest.approx(1 - (0 + 1 / 5 + 1 / 3 + 1 / 2) / 4)
    assert out["cer"] == pytest.approx((0 + 1 + 1 + 1) / (5 + 5 + 2 + 2))
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("收银台", "收银") == 1
    assert recognition_scores(["a"], [""])["one_minus_ned"] == 0.0 and recognition_scores([""], [""])["cer"] == 0.0
    with pytest.raises(ValueError):
        recognition_scores(["a"], [])


def test_end_to_end_needs_the_box_and_the_text():
    truth = {"a.jpg": [box(0, 0, 100, 20, "TOTAL"), box(0, 40, 100, 60, "12.50"), box(0, 80, 100, 99, "###")]}
    found = {"a.jpg": [box(2, 0, 100, 20, "Total"), box(0, 41, 100, 60, "12.50"), box(0, 80, 100, 99, "junk")]}
    out = end_to_end_scores(truth, found)
    assert out["hmean"] == pytest.approx(0.5) and out["hmean_caseless"] == 1.0
