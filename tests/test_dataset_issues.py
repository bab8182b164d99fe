"""Dataset import, each error, warning and note of the catalogue in detail: what is refused, what is left out
and what is kept, with the files named."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factory.datasets import images as images_mod
from factory.datasets import source as source_mod
from factory.datasets.images import load_rgb
from tests.dataset_helpers import (_base, _damage, expect_error, image_bytes, import_ok, issue, make_classes, manifest, put, shapes,
                                   two_class_entries, zip_dir, zip_entries)
from tests.dataset_helpers import home, seeded_home  # noqa: F401 (fixtures: a workspace holding ds:v1)


# -- errors in detail ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["deflate_stream", "crc", "central_directory", "truncated"])
def test_corrupt_archive(kind: str, tmp_path: Path, home: Path):
    compression = zipfile.ZIP_DEFLATED if kind == "deflate_stream" else zipfile.ZIP_STORED
    archive = zip_entries(tmp_path / "data.zip", two_class_entries(), compression)
    _damage(kind, archive)
    assert zipfile.is_zipfile(archive) == (kind != "truncated")
    err = expect_error(archive, home, "CORRUPT_ARCHIVE")
    assert err.details[0]["files"] == ["data.zip"]


@pytest.mark.parametrize("what", ["text_named_zip", "png_file", "tar"])
def test_not_an_archive(what: str, tmp_path: Path, home: Path):
    path = {"text_named_zip": put(tmp_path / "data.zip", "just text"),
            "png_file": put(tmp_path / "one.png", image_bytes("one")),
            "tar": tmp_path / "data.tar"}[what]
    if what == "tar":
        with tarfile.open(path, "w") as tf:
            tf.add(make_classes(tmp_path / "src", {"cat": 1, "dog": 1}), arcname="src")
    expect_error(path, home, "NOT_AN_ARCHIVE")


def test_archive_limits(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch):
    archive = zip_entries(tmp_path / "data.zip", two_class_entries(), zipfile.ZIP_DEFLATED)
    unpacked = sum(e.file_size for e in zipfile.ZipFile(archive).infolist())
    monkeypatch.setattr(source_mod, "MAX_UNPACKED_BYTES", unpacked - 1)
    assert "unpacked" in expect_error(archive, home, "ARCHIVE_TOO_LARGE").message
    monkeypatch.setattr(source_mod, "MAX_UNPACKED_BYTES", unpacked)
    monkeypatch.setattr(source_mod, "MAX_ARCHIVE_FILES", 6)
    assert import_ok(archive, home)["num_images"] == 6  # exactly at both limits is fine
    monkeypatch.setattr(source_mod, "MAX_ARCHIVE_FILES", 5)
    expect_error(archive, home, "TOO_MANY_FILES")


@pytest.mark.parametrize("entry", ["../evil.png", "/tmp/evil.png", "cat/../../evil.png"])
def test_unsafe_zip_entries_are_refused_before_unpacking(entry: str, tmp_path: Path, home: Path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    archive = zip_entries(work / "data.zip", {**two_class_entries(), entry: image_bytes("evil")})
    assert entry in [i.filename for i in zipfile.ZipFile(archive).infolist()]
    err = expect_error(archive, home, "UNSAFE_PATH")
    assert err.details[0]["files"] == [entry]
    assert [p.name for p in tmp_path.rglob("evil.png")] == []


def write_cat_dog_csv(src: Path, extra_row: str) -> None:
    """Two cats and two dogs listed in labels.csv, plus one more row under test."""
    for label in ("cat", "dog"):
        for i in range(2):
            put(src / f"images/{label}{i}.png", image_bytes(f"{label}{i}"))
    rows = [f"images/{label}{i}.png,{label}" for label in ("cat", "dog") for i in range(2)]
    put(src / "labels.csv", "\n".join(rows + [extra_row]) + "\n")


def test_label_file_paths_outside_the_dataset_are_refused(tmp_path: Path, home: Path):
    secret = put(tmp_path / "secret.png", image_bytes("secret"))
    src = tmp_path / "src"
    write_cat_dog_csv(src, "images/../../secret.png,cat")
    assert (src / "images/../../secret.png").resolve() == secret.resolve()
    err = expect_error(src, home, "UNSAFE_PATH")
    assert err.details[0]["files"] == ["images/../../secret.png"]


@pytest.mark.parametrize("name,content,fragment", [
    ("labels.csv", "path,label\nimages/a.png,cat\n\nimages/b.png,dog\nimages/c.png\n", "line 5"),
    ("labels.csv", "path,label\nimages/a.png,\n", "line 2"),
    ("labels.csv", "path,kind\nimages/a.png,cat\n", "line 1: no label column"),
    ("labels.csv", "\n\n", "is empty"),
    ("labels.csv", "path,label\nimages/a.png,caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("txfl-result.json", '{"categories": [\n  {"name": "cat",\n   "images": [{"url": "images/a.png"}]\n', "line 4"),
    ("txfl-result.json", '{"categories": [{"name": "cat", "files": []}]}', "'images'"),
    ("txfl-result.json", '{"categories": [{"name": "cat", "images": [{"path": "images/a.png"}]}]}', "'url'"),
])
def test_label_file_invalid_says_where(name: str, content: str | bytes, fragment: str, tmp_path: Path, home: Path):
    src = tmp_path / "src"
    for n in "abc":
        put(src / f"images/{n}.png", image_bytes(n))
    put(src / name, content)
    err = expect_error(src, home, "LABEL_FILE_INVALID")
    assert fragment in err.message
    assert err.details[0]["files"] == [name]


@pytest.mark.parametrize("layout", ["empty_folder", "class_folders_without_images"])
def test_unknown_format(layout: str, tmp_path: Path, home: Path):
    src = tmp_path / "src"
    src.mkdir()
    if layout == "class_folders_without_images":
        put(src / "cat/notes.txt", "x")
        put(src / "dog/notes.txt", "y")
    expect_error(src, home, "UNKNOWN_FORMAT")


def test_two_label_csvs_are_ambiguous(tmp_path: Path, home: Path):
    src = tmp_path / "src"
    put(src / "a.csv", "x.png,cat\n")
    put(src / "b.csv", "y.png,dog\n")
    put(src / "x.png", image_bytes("x"))
    err = expect_error(src, home, "LABEL_FILE_INVALID")
    assert "exactly one .csv" in err.message and err.details[0]["files"] == ["a.csv", "b.csv"]


@pytest.mark.parametrize("layout", ["all_images_corrupt", "csv_header_only", "only_unlabelled_images",
                                    "only_unlabelled_images_auto"])
def test_empty_dataset(layout: str, tmp_path: Path, home: Path):
    src = tmp_path / "src"
    kwargs = {}
    if layout == "all_images_corrupt":
        put(src / "cat/a.png", b"garbage")
        put(src / "dog/b.jpg", b"\xff\xd8\xff\xe0 garbage")
    elif layout == "csv_header_only":
        put(src / "x.png", image_bytes("x"))
        put(src / "labels.csv", "path,label\n")
    else:  # a flat folder of images: all unlabelled, detected as folder-per-class with no classes
        put(src / "a.png", image_bytes("a"))
        put(src / "b.png", image_bytes("b"))
        kwargs = {"fmt": "folder_per_class"} if layout == "only_unlabelled_images" else {}
    err = expect_error(src, home, "EMPTY_DATASET", **kwargs)
    if layout.startswith("only_unlabelled"):
        assert "2 images at the top level are unlabelled" in err.message
    if layout == "all_images_corrupt":  # the reason is reported too
        assert sorted(issue(err.details, "CORRUPT_IMAGE")["files"]) == ["cat/a.png", "dog/b.jpg"]


@pytest.mark.parametrize("layout", ["csv_one_label", "one_folder_with_readme", "split_folders_one_class",
                                    "other_class_all_corrupt", "single_class_folder", "zip_of_single_class_folder"])
def test_too_few_classes(layout: str, tmp_path: Path, home: Path):
    src = tmp_path / "src"
    if layout in ("single_class_folder", "zip_of_single_class_folder"):  # not mistaken for a wrapping folder
        make_classes(src, {"cat": 3})
        if layout.startswith("zip"):
            src = zip_dir(src, tmp_path / "cats.zip")
    elif layout == "csv_one_label":
        for i in range(3):
            put(src / f"images/{i}.png", image_bytes(str(i)))
        put(src / "labels.csv", "".join(f"images/{i}.png,cat\n" for i in range(3)))
    elif layout == "one_folder_with_readme":
        make_classes(src, {"cat": 3})
        put(src / "README.md", "cats")
    elif layout == "split_folders_one_class":
        make_classes(src / "train", {"cat": 3})
        make_classes(src / "test", {"cat": 1})
    else:
        make_classes(src, {"cat": 3})
        put(src / "dog/bad.png", b"garbage")
    err = expect_error(src, home, "TOO_FEW_CLASSES")
    assert "'cat'" in err.message


def test_path_not_found(tmp_path: Path, home: Path):
    err = expect_error(tmp_path / "no" / "such.zip", home, "PATH_NOT_FOUND")
    assert str(tmp_path / "no" / "such.zip") in err.message


# -- warnings and notes in detail ----------------------------------------------------------------
def _truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


@pytest.mark.parametrize("bad", ["random_bytes", "truncated_png", "truncated_jpeg", "empty_file", "text_as_jpg"])
def test_corrupt_images_are_left_out(bad: str, tmp_path: Path, home: Path):
    src = _base(tmp_path / "src")
    name, data = {
        "random_bytes": ("cat/x.png", np.random.default_rng(1).bytes(3000)),
        "truncated_png": ("cat/x.png", _truncated(image_bytes("p", (64, 64)), 0.6)),
        "truncated_jpeg": ("cat/x.jpg", _truncated(image_bytes("j", (64, 64), fmt="JPEG"), 0.6)),
        "empty_file": ("cat/x.png", b""),
        "text_as_jpg": ("cat/x.jpg", b"<html>404 not found</html>"),
    }[bad]
    put(src / name, data)
    result = import_ok(src, home)
    assert issue(result["issues"], "CORRUPT_IMAGE")["files"] == [name]
    assert result["num_images"] == 6
    assert name not in {m["source"] for m in manifest(home, result)}


def test_small_images_are_left_out_by_their_shortest_side(tmp_path: Path, home: Path):
    src = _base(tmp_path / "src")
    put(src / "cat/tiny.png", image_bytes("tiny", (20, 20)))
    put(src / "cat/thin.png", image_bytes("thin", (200, 29)))
    put(src / "dog/just_big_enough.png", image_bytes("ok", (30, 30)))
    result = import_ok(src, home)
    assert sorted(issue(result["issues"], "IMAGE_TOO_SMALL")["files"]) == ["cat/thin.png", "cat/tiny.png"]
    assert result["stats"]["images_per_class"] == {"cat": 3, "dog": 4}


@pytest.mark.parametrize("limit", ["factory_limit", "pillow_warning", "pillow_error"])
def test_decompression_bombs_are_left_out(limit: str, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch):
    src = make_classes(tmp_path / "src", {"cat": 2, "dog": 2}, size=(30, 30))  # 900 pixels
    if limit == "factory_limit":
        monkeypatch.setattr(images_mod, "MAX_PIXELS", 1000)
        size = (40, 40)
    else:  # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        size = (40, 40) if limit == "pillow_warning" else (50, 50)
    put(src / "dog/bomb.png", image_bytes("bomb", size))
    result = import_ok(src, home)
    assert issue(result["issues"], "DECOMPRESSION_BOMB")["files"] == ["dog/bomb.png"]
    assert result["stats"]["images_per_class"] == {"cat": 2, "dog": 2}


def test_duplicates_keep_the_first_copy(tmp_path: Path, home: Path):
    src = _base(tmp_path / "src")
    shutil.copyfile(src / "dog/dog_001.png", src / "dog/dog_copy.png")
    result = import_ok(src, home)
    found = issue(result["issues"], "DUPLICATE_IMAGE")
    assert found["files"] == ["dog/dog_copy.png"]
    assert "kept dog/dog_001.png" in found["message"]
    assert result["stats"]["images_per_class"] == {"cat": 3, "dog": 3}


def test_duplicate_across_split_folders_is_kept_once(tmp_path: Path, home: Path):
    src = tmp_path / "src"
    make_classes(src / "train", {"cat": 4, "dog": 4})
    make_classes(src / "val", {"cat": 1, "dog": 1})
    shutil.copyfile(src / "train/cat/cat_000.png", src / "val/cat/leaked.png")
    result = import_ok(src, home)
    copies = {"train/cat/cat_000.png", "val/cat/leaked.png"}
    listed = set(issue(result["issues"], "DUPLICATE_IMAGE")["files"])
    assert len(listed) == 1 and listed < copies
    sources = [m["source"] for m in manifest(home, result)]
    assert [s for s in sources if s in copies] == list(copies - listed)
    assert sum(result["splits"].values()) == 10


def test_conflicting_labels_in_a_csv_drop_every_copy(tmp_path: Path, home: Path):
    src = tmp_path / "src"
    write_cat_dog_csv(src, "images/cat0.png,dog")
    result = import_ok(src, home)
    assert issue(result["issues"], "CONFLICTING_LABELS")["files"] == ["images/cat0.png", "images/cat0.png"]
    assert result["stats"]["images_per_class"] == {"cat": 1, "dog": 2}


def test_missing_files_in_txfl_are_reported(tmp_path: Path, home: Path):
    src = shapes(tmp_path / "src", "kuplus_txfl", per_class=3)
    doc = json.loads((src / "txfl-result.json").read_text())
    doc["categories"][0]["images"].append({"url": "circle/gone.png"})
    (src / "txfl-result.json").write_text(json.dumps(doc))
    (src / "square/square_002.png").unlink()
    result = import_ok(src, home)
    assert sorted(issue(result["issues"], "MISSING_FILE")["files"]) == ["circle/gone.png", "square/square_002.png"]
    assert result["stats"]["images_per_class"] == {"circle": 3, "square": 2}


def test_small_class_and_invalid_label_names_list_exactly_the_classes(tmp_path: Path, home: Path):
    src = make_classes(tmp_path / "src", {"big_enough": 20, "my class": 2, "1abc": 3, "Fine_2": 2}, size=(30, 30))
    result = import_ok(src, home)
    assert issue(result["issues"], "SMALL_CLASS")["files"] == ["1abc (3)", "Fine_2 (2)", "my class (2)"]
    assert issue(result["issues"], "INVALID_LABEL_NAME")["files"] == ["1abc", "my class"]
    assert result["classes"] == ["1abc", "Fine_2", "big_enough", "my class"]


def test_colour_modes_are_noted_and_load_as_rgb(tmp_path: Path, home: Path):
    src = _base(tmp_path / "src")
    converted = {"cat/rgba.png": ("RGBA", "PNG"), "cat/gray.png": ("L", "PNG"), "dog/palette.png": ("P", "PNG"),
                 "dog/cmyk.jpg": ("CMYK", "JPEG")}
    for rel, (mode, fmt) in converted.items():
        put(src / rel, image_bytes(rel, mode=mode, fmt=fmt))
    result = import_ok(src, home)
    found = issue(result["issues"], "COLOR_MODE_CONVERTED")
    assert sorted(found["files"]) == sorted(converted)
    assert "CMYK, L, P, RGBA" in found["message"]
    entries = {m["source"]: m for m in manifest(home, result)}
    assert result["num_images"] == 10
    for rel, (mode, _) in converted.items():
        assert entries[rel]["mode"] == mode
        img = load_rgb(home / result["path"] / entries[rel]["file"])
        assert (img.mode, img.size) == ("RGB", (40, 40))


