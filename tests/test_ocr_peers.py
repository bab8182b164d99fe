"""The peers the OCR quality benchmark reads beside our model (benchmarks/perf/ocr_quality.py) work here, offline:
RapidOCR with its bundled PP-OCRv4 models and Tesseract with English and Chinese read a clearly rendered page, and
the benchmark's scoring takes the best-overlapping line's text per labelled region."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from benchmarks.perf.ocr_quality import _joined, rapidocr, read_in_region, score, tesseract

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def page(tmp_path: Path) -> tuple[Path, list[dict]]:
    image = Image.new("RGB", (400, 160), "white")
    draw = ImageDraw.Draw(image)
    draw.text((30, 40), "TOTAL 42", fill="black", font=ImageFont.truetype(FONT, 40))
    path = tmp_path / "page.png"
    image.save(path)
    box = draw.textbbox((30, 40), "TOTAL 42", font=ImageFont.truetype(FONT, 40))
    x1, y1, x2, y2 = box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4
    return path, [{"points": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "text": "TOTAL 42"}]


def test_rapidocr_and_tesseract_read_a_clear_page_and_are_scored_by_region(tmp_path: Path):
    path, regions = page(tmp_path)
    for reader in (rapidocr(), tesseract()):
        lines = reader(path)
        assert any("TOTAL" in line["text"] for line in lines), lines
        s = score(reader, [(path, regions)])
        assert s["pages"] == 1 and s["regions"] == 1 and s["det"]["hmean"] == 1.0 and s["word_accuracy"] == 1.0
        assert s["english_word_accuracy"] == 1.0 and s["chinese_line_accuracy"] is None


def test_a_region_reads_the_best_overlapping_line_or_nothing():
    region = {"points": [[0, 0], [100, 0], [100, 20], [0, 20]], "text": "A"}
    lines = [{"points": [[0, 0], [40, 0], [40, 20], [0, 20]], "text": "part"},
             {"points": [[2, 1], [98, 1], [98, 19], [2, 19]], "text": "whole"}]
    assert read_in_region(region, lines) == "whole" and read_in_region(region, lines[:1]) == ""
    assert _joined(["营业", "时间", "9:00", "18:00"]) == "营业时间 9:00 18:00"
