"""Detection datasets: every layout (VOC, COCO, YOLO, Ku+ txkt, ModelArts manifest, CSV coordinates)
imports the same seeded scenes with the same boxes; import -> export -> import round-trips exactly
for COCO, YOLO and VOC; box and annotation problems get their codes (clipped, dropped, degenerate,
unknown class, XML without image, image without XML, unreadable with file and line, negatives)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory import api
from factory.api import session
from factory.tasks.detection.datasets import write_detection
from factory.errors import DatasetError
from factory.tasks.detection.formats import DETECTION_CODES
from factory.refs import dataset_row_for

LAYOUTS = ["coco", "yolo", "voc", "kuplus_txkt", "modelarts_manifest", "csv_coordinates"]


def boxes_by_source(home: Path, ref: str) -> dict[str, list]:
    with session(home) as (ws, catalog):
        row = dataset_row_for(catalog, ref)
    manifest = json.loads((ws.home / row["path"] / "manifest.json").read_text())
    return {Path(m["source"]).name: sorted((b["label"], *[round(v, 1) for v in b["bbox"]]) for b in m["boxes"])
            for m in manifest}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("det")
    home = root / "ws"
    api.import_dataset(write_detection(root / "coco", images=30, seed=4, layout="coco"), "ref", task="detection", home=home)
    return root, home, boxes_by_source(home, "ref")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_imports_the_same_boxes(layout: str, reference):
    root, home, expected = reference
    out = api.import_dataset(write_detection(root / layout, images=30, seed=4, layout=layout), f"d-{layout.replace('_', '-')}",
                             task="detection", home=home)
    assert out["format"] == layout and out["num_images"] == 30 and out["task"] == "detection"
    assert out["classes"] == ["circle", "square", "triangle"] and out["splits"] == {"train": 24, "val": 3, "test": 3}
    assert boxes_by_source(home, f"d-{layout.replace('_', '-')}") == expected
    stats = out["stats"]
    assert sum(stats["boxes_per_class"].values()) == stats["num_boxes"] == sum(stats["boxes_by_size"].values())
    assert stats["boxes_by_size"]["small"] > 0 and stats["boxes_by_size"]["large"] > 0


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_import_export_import_round_trips_exactly(fmt: str, reference, tmp_path: Path):
    _, home, expected = reference
    out = api.export_dataset("ref", tmp_path / fmt, fmt=fmt, home=home)
    assert Path(out["path"]).is_dir()
    again = api.import_dataset(tmp_path / fmt, f"again-{fmt}", task="detection", home=home)
    assert again["format"] == fmt and again["splits"] == {"train": 24, "val": 3, "test": 3}
    with session(home) as (ws, catalog):
        first = json.loads((ws.home / dataset_row_for(catalog, "ref")["path"] / "manifest.json").read_text())
        second = json.loads((ws.home / dataset_row_for(catalog, f"again-{fmt}")["path"] / "manifest.json").read_text())
    key = lambda m: m["sha256"]  # noqa: E731  same image bytes, same split, same boxes
    assert [(m["sha256"], m["split"], m["boxes"]) for m in sorted(first, key=key)] == \
        [(m["sha256"], m["split"], m["boxes"]) for m in sorted(second, key=key)]


def test_box_and_annotation_problems_get_their_codes(tmp_path: Path):
    data = write_detection(tmp_path / "voc", images=10, seed=2, layout="voc")
    xmls = sorted(data.rglob("*.xml"))
    # clipped (30% outside), dropped (80% outside), degenerate (1 px), unknown class (no name)
    extra = ("<object><name>circle</name><bndbox><xmin>-30</xmin><ymin>10</ymin><xmax>70</xmax><ymax>60</ymax></bndbox></object>"
             "<object><name>square</name><bndbox><xmin>280</xmin><ymin>10</ymin><xmax>380</xmax><ymax>60</ymax></bndbox></object>"
             "<object><name>square</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>11</xmax><ymax>60</ymax></bndbox></object>"
             "<object><name></name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object>")
    xmls[0].write_text(xmls[0].read_text().replace("</annotation>", extra + "</annotation>"))
    xmls[1].write_text("<annotation><filename>x.png</filename>\n<object><name>circle</name>\n<bndbox>")  # broken on line 3
    (xmls[2].parent / "orphan.xml").write_text(xmls[2].read_text().replace(xmls[2].stem, "orphan"))
    xmls[3].unlink()  # its image has no annotation now
    xmls[4].write_text("<annotation><filename>empty.png</filename></annotation>")  # an image with no objects
    out = api.import_dataset(data, "problems", task="detection", home=tmp_path / "ws")
    codes = {i["code"]: i for i in out["issues"]}
    for code in ("BOX_CLIPPED", "BOX_OUTSIDE_IMAGE", "BOX_DEGENERATE", "UNKNOWN_CLASS", "ANNOTATION_UNREADABLE",
                 "ANNOTATION_WITHOUT_IMAGE", "IMAGE_WITHOUT_ANNOTATION", "NEGATIVE_IMAGES"):
        assert code in codes, code
    assert "line 3" in codes["ANNOTATION_UNREADABLE"]["files"][0]
    assert out["num_images"] == 8  # 10 - the unreadable one - the one without its XML
    boxes = boxes_by_source(tmp_path / "ws", "problems")
    clipped = [b for b in boxes[xmls[0].with_suffix(".png").name] if b[0] == "circle" and b[1] == 0]
    assert clipped == [("circle", 0, 10, 70, 50)]  # clipped to the left edge


def test_bad_annotation_files_are_clear_errors(tmp_path: Path):
    data = write_detection(tmp_path / "coco", images=6, seed=1, layout="coco")
    (data / "annotations.json").write_text('{"images": [}')
    with pytest.raises(DatasetError, match="line 1"):
        api.import_dataset(data, "broken", task="detection", home=tmp_path / "ws")
    assert api.list_datasets(home=tmp_path / "ws") == []  # nothing written
    plain = tmp_path / "plain"
    plain.mkdir()
    (data / "train" / "scene_0000.png").rename(plain / "a.png")
    with pytest.raises(DatasetError, match="No supported detection layout") as err:
        api.import_dataset(plain, "plain", task="detection", home=tmp_path / "ws")
    assert err.value.code == "UNKNOWN_DETECTION_FORMAT" and "YOLO" in str(err.value)


def test_every_detection_code_is_exercised():
    text = Path(__file__).read_text()
    assert all(code in text for code in DETECTION_CODES)
