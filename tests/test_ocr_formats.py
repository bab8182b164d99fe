"""OCR label layouts: what the generator writes in each layout reads back as the same texts and polygons (with the
layout found by itself), and the quirks users' files have: commas in ICDAR texts, a BOM, CRLF, PaddleOCR's `*`
and MMOCR's ignore flag as don't-care, Ku+'s stray comma and its missing "image", a bad line named by number."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from factory.errors import DatasetError
from factory.tasks.ocr.formats import CROP_LAYOUTS, SCENE_LAYOUTS, read_layout, write_ocr
from factory.tasks.ocr.synthetic import crop, scene


def expected_scenes(count: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    return [scene(rng, 320, 240, ("en", "zh")).regions for _ in range(count)]


@pytest.mark.parametrize("layout", SCENE_LAYOUTS)
def test_scene_layouts_read_back_what_was_written(layout: str, tmp_path: Path):
    root = write_ocr(tmp_path / layout, layout, count=3, seed=5, languages=("en", "zh"))
    found, entries = read_layout(root)
    assert found == ("icdar2015" if layout == "icdar2015_folders" else layout)
    truth = expected_scenes(3, 5)
    assert len(entries) == 3
    for entry, regions in zip(sorted(entries, key=lambda e: e["file"]), truth):
        assert (root / entry["file"]).is_file()
        assert [r["text"] for r in entry["regions"]] == [r["text"] for r in regions]
        for got, want in zip(entry["regions"], regions):
            assert np.allclose(got["points"], want["points"], atol=0.51)  # ICDAR stores whole pixels


@pytest.mark.parametrize("layout", CROP_LAYOUTS)
def test_crop_layouts_read_back_what_was_written(layout: str, tmp_path: Path):
    root = write_ocr(tmp_path / layout, layout, count=4, seed=9, languages=("en", "zh"))
    found, entries = read_layout(root)
    rng = random.Random(9)
    assert found == layout
    assert [e["text"] for e in sorted(entries, key=lambda e: e["file"])] == [crop(rng, ("en", "zh"))[1] for _ in range(4)]
    assert all((root / e["file"]).is_file() for e in entries)


def test_icdar_texts_keep_their_commas_and_ignore_markers_become_dont_care(tmp_path: Path):
    (tmp_path / "img_1.jpg").write_bytes(b"x")
    (tmp_path / "gt_img_1.txt").write_bytes("\ufeff377,117,463,117,465,130,378,130,Genaxis Theatre, Inc.\r\n"
                                            "1,2,3,2,3,4,1,4,###\r\n".encode())
    _, entries = read_layout(tmp_path)
    assert [r["text"] for r in entries[0]["regions"]] == ["Genaxis Theatre, Inc.", "###"]
    (tmp_path / "gt_img_1.txt").write_text("1,2,3,4,five\n")
    with pytest.raises(DatasetError, match="gt_img_1.txt line 1: 8 coordinates and a text"):
        read_layout(tmp_path)


def test_paddle_star_and_mmocr_ignore_are_dont_care(tmp_path: Path):
    paddle = tmp_path / "p"
    paddle.mkdir()
    (paddle / "a.jpg").write_bytes(b"x")
    (paddle / "Label.txt").write_text('a.jpg\t[{"transcription": "*", "points": [[0,0],[9,0],[9,9],[0,9]]}, '
                                      '{"transcription": "收银台", "points": [[0,0],[9,0],[9,9],[0,9]], "difficult": false}]\n')
    assert [r["text"] for r in read_layout(paddle)[1][0]["regions"]] == ["###", "收银台"]
    mm = tmp_path / "m"
    mm.mkdir()
    (mm / "det.json").write_text(json.dumps({"metainfo": {"task_name": "textdet"}, "data_list": [
        {"img_path": "a.jpg", "instances": [{"polygon": [0, 0, 9, 0, 9, 9, 0, 9], "ignore": True}]}]}))
    assert read_layout(mm) == ("mmocr_det", [{"file": "a.jpg", "regions": [{"points": [[0, 0], [9, 0], [9, 9], [0, 9]],
                                                                            "text": "###"}]}])


def test_kuplus_quirks(tmp_path: Path):
    (tmp_path / "wzsb-result.json").write_text('[{"image":"word_1.png,","label":"Genaxis"}]')
    assert read_layout(tmp_path) == ("kuplus_wzsb", [{"file": "word_1.png", "text": "Genaxis"}])
    other = tmp_path / "scenes"
    other.mkdir()
    (other / "wzjc-result.json").write_text('[{"data":[{"label":"LIM SENG THO","points":[{"x":121,"y":220}]}]}]')
    with pytest.raises(DatasetError, match="entry 1 has no \"image\""):
        read_layout(other)


def test_an_unknown_folder_says_which_layouts_are_read(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match="No supported OCR layout") as info:
        read_layout(tmp_path)
    assert "ICDAR 2015" in info.value.fix or "ICDAR 2015" in info.value.message
