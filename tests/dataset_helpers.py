"""Shared by the dataset tests: images, folders and archives made here, and importing them into a workspace."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factory import api
from factory.datasets.issues import CATALOGUE
from factory.datasets.synthetic import write_shapes
from factory.errors import DatasetError
from tests.conftest import copy_home

LAYOUTS = ("folder_per_class", "split_folders", "kuplus_txfl", "csv")


# -- making data ---------------------------------------------------------------------------------
def image_bytes(key: str, size: tuple[int, int] = (40, 40), mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """An encoded noise image whose content is fixed by `key` (different keys, different content)."""
    width, height = size
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def make_classes(root: Path, counts: dict[str, int], size: tuple[int, int] = (40, 40), key: str = "") -> Path:
    """root/<label>/<label>_NNN.png, `counts[label]` distinct images per class."""
    for label, n in counts.items():
        for i in range(n):
            put(root / label / f"{label}_{i:03d}.png", image_bytes(f"{key}/{root.name}/{label}/{i}", size))
    return root


def zip_dir(src: Path, dest: Path, prefix: str = "", compression: int = zipfile.ZIP_STORED) -> Path:
    """Zip every file under `src`, each entry named `prefix + relative path`."""
    with zipfile.ZipFile(dest, "w", compression) as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(src).as_posix())
    return dest


def zip_entries(dest: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(dest, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return dest


def two_class_entries(key: str = "zip") -> dict[str, bytes]:
    return {f"{label}/{i}.png": image_bytes(f"{key}/{label}/{i}") for label in ("cat", "dog") for i in range(3)}


# -- importing and checking ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def seeded_home(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("seeded")
    src = make_classes(base / "src", {"cat": 2, "dog": 2}, key="seeded")
    api.import_dataset(src, "ds", home=base / "ws")
    return base / "ws"


@pytest.fixture
def home(tmp_path: Path, seeded_home: Path) -> Path:
    """A workspace that already holds dataset ds:v1, so 'nothing changed' is checked against content."""
    dest = tmp_path / "ws"
    copy_home(seeded_home, dest)
    return dest


def import_ok(src: Path, home: Path, name: str = "data", **kwargs) -> dict:
    result = api.import_dataset(src, name, home=home, **kwargs)
    assert result["dataset"] == name
    assert not [i for i in result["issues"] if i["severity"] == "error"]
    assert not list((home / "datasets").glob(".unpack-*")), "the unpacked zip was left behind"
    return result


def issue(issues: list[dict], code: str) -> dict:
    """The one issue with `code`; its severity must be the catalogue's."""
    found = [i for i in issues if i["code"] == code]
    assert len(found) == 1, f"expected one {code} issue, got {issues}"
    assert found[0]["severity"] == CATALOGUE[code][0]
    assert found[0]["message"].startswith(CATALOGUE[code][1])
    return found[0]


def codes(result: dict) -> set[str]:
    return {i["code"] for i in result["issues"]}


def snapshot(home: Path) -> tuple[list[dict], list[str]]:
    files = sorted(p.relative_to(home).as_posix() for p in (home / "datasets").rglob("*"))
    return api.list_datasets(home=home), files


def expect_error(src: Path, home: Path, code: str, name: str = "ds", **kwargs) -> DatasetError:
    """The import raises DatasetError `code` and changes neither the catalog nor the datasets folder."""
    before = snapshot(home)
    assert before[0], "the workspace should already hold a dataset"
    with pytest.raises(DatasetError) as info:
        api.import_dataset(src, name, home=home, **kwargs)
    err = info.value
    assert err.code == code, err.details
    issue(err.details, code)
    assert CATALOGUE[code][0] == "error"
    assert snapshot(home) == before
    return err


def manifest(home: Path, result: dict) -> list[dict]:
    return json.loads((home / result["path"] / "manifest.json").read_text())


def split_of(home: Path, result: dict) -> dict[str, str]:
    return {m["source"]: m["split"] for m in manifest(home, result)}


def _damage(kind: str, path: Path) -> None:
    raw = bytearray(path.read_bytes())
    if kind == "deflate_stream":
        raw[30 + len("cat/0.png")] ^= 0xFF
    elif kind == "crc":
        raw[30 + len("cat/0.png") + 200] ^= 0xFF
    elif kind == "central_directory":
        at = raw.rfind(b"PK\x01\x02")
        raw[at:at + 4] = b"XXXX"
    elif kind == "truncated":
        raw = raw[: len(raw) // 2]
    path.write_bytes(bytes(raw))


def _base(src: Path) -> Path:
    """A valid two-class folder to which a single problem is added."""
    return make_classes(src, {"cat": 3, "dog": 3})


def shapes(dest: Path, layout: str, per_class: int = 10, classes: int = 2) -> Path:
    return write_shapes(dest, classes=classes, per_class=per_class, size=32, seed=3, layout=layout)
