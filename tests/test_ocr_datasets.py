"""OCR dataset import (not yet behind `edgefactory dataset import --task ocr`: the task registers once it trains):
scenes and crops from generated layouts, split folders kept, statistics, and every check with its code, nothing
dropped silently and nothing published when the data cannot be used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from factory.api import session
from factory.errors import DatasetError
from factory.tasks.ocr.datasets import import_ocr
from factory.tasks.ocr.formats import write_ocr


def codes(summary: dict) -> dict[str, dict]:
    return {i["code"]: i for i in summary["issues"]}


def test_scenes_with_split_folders_import_with_their_statistics(tmp_path: Path):
    root = tmp_path / "data"
    write_ocr(root / "train", "icdar2015", count=12, seed=1, languages=("en", "zh"))
    write_ocr(root / "test", "icdar2015", count=4, seed=2, languages=("en", "zh"))
    with session(tmp_path / "ws") as (ws, catalog):
        out = import_ocr(ws, catalog, root, "signs")
        row = catalog.datasets()[0]
    assert out["splits"]["test"] == 4 and out["splits"]["train"] + out["splits"]["val"] == 12
    assert row["task"] == "ocr" and row["source_format"] == "icdar2015"
    stats = row["stats"]
    assert stats["num_images"] == 16 and stats["languages"] == ["latin", "zh"] and stats["num_texts"] >= 16
    assert sum(stats["characters"].values()) == sum(len(t) for t in _texts(ws.home / row["path"]))
    assert stats["text_height_px"]["min"] > 8 and -15 < stats["angle_deg"]["min"] <= stats["angle_deg"]["max"] < 15


def _texts(folder: Path) -> list[str]:
    return [r["text"] for m in json.loads((folder / "manifest.json").read_text()) for r in m.get("regions", [])]


def test_crops_import_and_a_dictionary_that_lacks_characters_is_reported(tmp_path: Path):
    root = write_ocr(tmp_path / "crops", "paddle_rec", count=10, seed=3, languages=("en",))
    with session(tmp_path / "ws") as (ws, catalog):
        out = import_ocr(ws, catalog, root, "words", dictionary="0123456789")
    issue = codes(out)["CHARACTERS_NOT_IN_DICTIONARY"]
    assert "Missing:" in issue["message"] and out["stats"]["num_images"] == 10  # listed, nothing dropped


def test_every_problem_gets_its_code_and_the_rest_is_kept(tmp_path: Path):
    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (100, 60), "white").save(root / "a.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (100, 60), "white").save(root / "b.jpg", exif=exif)
    lines = {"a": ["10,10,50,10,50,30,10,30,OPEN", "60,10,110,10,110,30,60,30,EDGE",  # partly outside: clipped
                   "0,0,40,20,40,0,0,20,BOW",  # crosses itself
                   "5,40,30,40,30,55,5,55,", "5,40,9,40,9,44,5,44,###"],
             "b": ["200,10,260,10,260,30,200,30,GONE", "10,10,60,10,60,30,10,30,EXIT"]}
    for stem, rows in lines.items():
        (root / f"gt_{stem}.txt").write_text("\n".join(rows) + "\n")
    with session(tmp_path / "ws") as (ws, catalog):
        out = import_ocr(ws, catalog, root, "checked")
        manifest = json.loads((ws.home / catalog.datasets()[0]["path"] / "manifest.json").read_text())
    found = codes(out)
    assert {"POLYGON_OUTSIDE_IMAGE", "POLYGON_INVALID", "EMPTY_TRANSCRIPTION", "EXIF_ROTATED"} <= set(found)
    texts = sorted(r["text"] for m in manifest for r in m["regions"])
    assert texts == ["###", "EDGE", "EXIT", "OPEN"]  # GONE was wholly outside; ### kept as don't-care
    edge = next(r for m in manifest for r in m["regions"] if r["text"] == "EDGE")
    assert max(x for x, _ in edge["points"]) == 100


def test_too_few_points_long_texts_and_small_crops_get_their_codes(tmp_path: Path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    Image.new("RGB", (100, 60), "white").save(scenes / "a.jpg")
    regions = [{"transcription": "TRI", "points": [[10, 10], [40, 10], [25, 30]]},
               {"transcription": "x" * 70, "points": [[5, 35], [95, 35], [95, 55], [5, 55]]},
               {"transcription": "OK", "points": [[50, 5], [90, 5], [90, 25], [50, 25]]}]
    (scenes / "Label.txt").write_text("a.jpg\t" + json.dumps(regions) + "\n")
    crops = tmp_path / "crops"
    crops.mkdir()
    Image.new("RGB", (60, 6), "white").save(crops / "thin.png")
    Image.new("RGB", (60, 20), "white").save(crops / "word.png")
    (crops / "labels.csv").write_text("filename,words\nthin.png,LOW\nword.png,WORD\n")
    with session(tmp_path / "ws") as (ws, catalog):
        assert {"POLYGON_TOO_FEW_POINTS", "TEXT_TOO_LONG"} <= set(codes(import_ocr(ws, catalog, scenes, "scenes")))
        assert "CROP_TOO_SMALL" in codes(import_ocr(ws, catalog, crops, "crops"))


def test_unusable_data_publishes_nothing(tmp_path: Path):
    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (100, 60), "white").save(root / "a.jpg")
    (root / "gt_a.txt").write_text("1,1,2,1,2,2,1,2,###\n")
    with session(tmp_path / "ws") as (ws, catalog):
        with pytest.raises(DatasetError, match="No usable labelled images"):
            import_ocr(ws, catalog, root, "empty")
        assert catalog.datasets() == [] and not (ws.home / "datasets" / "empty").exists()
    shutil.rmtree(root)
    root.mkdir()
    (root / "notes.txt").write_text("nothing")
    with session(tmp_path / "ws") as (ws, catalog), pytest.raises(DatasetError, match="No supported OCR layout") as info:
        import_ocr(ws, catalog, root, "nothing")
    assert info.value.code == "UNKNOWN_OCR_FORMAT"
