"""OCR label layouts (../shared/reference/ocr-anchors.md §1, Ku+ A.2.2 items 3-5): readers into one shape, and
writers for the generator.

Scene layouts (images with text polygons) read into `{"file": path relative to the root, "regions": [{"points":
[[x, y], ...], "text": str}]}`, with every ignore marker (`###`, PaddleOCR's `*`, MMOCR's `"ignore": true`) made
`###`: ICDAR 2015 (`img_N.jpg` + `gt_img_N.txt` side by side, or in a `*images` / `*gt` folder pair; 8 numbers then
the text, which may hold commas; UTF-8 with or without BOM), the PaddleOCR detection list (`Label.txt`: path TAB
JSON), Ku+ `wzjc-result.json` and `dddwzsb-result.json`, MMOCR textdet JSON.

Crop layouts (word or line images) read into `{"file": ..., "text": str}`: the PaddleOCR recognition list (path
TAB text, any file name), Ku+ `wzsb-result.json` (its stray trailing comma in `image` tolerated), MMOCR textrecog
JSON, and `labels.csv` (filename,words).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from pathlib import Path
from typing import Callable

from factory.datasets.issues import fail, register_codes
from factory.errors import DatasetError
from factory.i18n import register
from factory.tasks.ocr.metrics import DONT_CARE
from factory.tasks.ocr.synthetic import crop, scene
from factory.tasks.ocr.zh import ZH

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
SCENE_LAYOUTS = ("icdar2015", "icdar2015_folders", "paddle_det", "kuplus_wzjc", "kuplus_dddwzsb", "mmocr_det")
CROP_LAYOUTS = ("paddle_rec", "kuplus_wzsb", "mmocr_rec", "labels_csv")
register("zh", ZH)  # the OCR issues' words, in Chinese too
OCR_CODES = register_codes({
    "UNKNOWN_OCR_FORMAT": ("error", "No supported OCR layout was found.",
                           "Use ICDAR 2015 (img_N.jpg + gt_img_N.txt), a PaddleOCR Label.txt or recognition list "
                           "(path TAB text), Ku+ wzjc-result.json, dddwzsb-result.json or wzsb-result.json, an MMOCR "
                           "textdet or textrecog JSON, or labels.csv (filename,words); or pass --format."),
})
KUPLUS_FILES = {"kuplus_wzjc": "wzjc-result.json", "kuplus_dddwzsb": "dddwzsb-result.json", "kuplus_wzsb": "wzsb-result.json"}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")  # with or without a BOM


def _head(path: Path, size: int = 4096) -> str:
    """The first `size` characters of a text file (layout detection never reads a whole annotation file)."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        return fh.read(size)


def _json(path: Path):
    try:
        return json.loads(_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail("LABEL_FILE_INVALID", path.name, f"{path.name}: {exc}.")


def _ignore(text: str, flagged: bool = False) -> str:
    return DONT_CARE if flagged or text in (DONT_CARE, "*") else text


# -- scene readers ------------------------------------------------------------------------------------------
def icdar_lines(path: Path) -> list[dict]:
    regions = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",", 8)
        try:
            coords = [float(v) for v in parts[:8]]
        except ValueError:
            coords = []
        if len(coords) != 8 or len(parts) < 9:
            raise fail("LABEL_FILE_INVALID", path.name, f"{path.name} line {number}: 8 coordinates and a text were "
                                                        f"expected, got {line[:80]!r}.")
        regions.append({"points": [coords[i:i + 2] for i in range(0, 8, 2)], "text": _ignore(parts[8].strip())})
    return regions


def read_icdar2015(root: Path) -> list[dict]:
    """Side by side (`img_1.jpg`, `gt_img_1.txt`), or an `*images` folder beside a `*gt` folder."""
    out = []
    for gt in sorted(root.rglob("gt_*.txt")):
        stem = gt.stem[3:]
        folders = [gt.parent, *(p for p in gt.parent.parent.iterdir() if p.is_dir() and p.name.endswith("images"))]
        image = next((f / (stem + s) for f in folders for s in sorted(IMAGE_SUFFIXES) if (f / (stem + s)).is_file()), None)
        if image is not None:
            out.append({"file": image.relative_to(root).as_posix(), "regions": icdar_lines(gt)})
    return out


def read_paddle_det(root: Path, label_file: Path | None = None) -> list[dict]:
    path = label_file or _paddle_list(root, scenes=True)
    out = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        name, _, labels = line.partition("\t")
        try:
            items = json.loads(labels)
            regions = [{"points": [[float(x), float(y)] for x, y in item["points"]],
                        "text": _ignore(str(item.get("transcription", "")))} for item in items]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise fail("LABEL_FILE_INVALID", path.name, f"{path.name} line {number}: a path, a TAB and a JSON list of "
                                                        "{transcription, points} were expected.")
        out.append({"file": _under(root, path, name), "regions": regions})
    return out


def read_kuplus_scenes(root: Path, file_name: str) -> list[dict]:
    path = next(root.rglob(file_name))
    out = []
    for i, entry in enumerate(_json(path) or []):
        if not isinstance(entry, dict) or "image" not in entry:
            raise fail("LABEL_FILE_INVALID", path.name, f"{path.name} entry {i + 1} has no \"image\": each entry needs the "
                                                        "path of its image inside the archive (Ku+'s own example omits it).")
        regions = [{"points": [[float(p["x"]), float(p["y"])] for p in item.get("points", [])],
                    "text": _ignore(str(item.get("label", "")))} for item in entry.get("data", [])]
        out.append({"file": _under(root, path, entry["image"].rstrip(",")), "regions": regions})
    return out


def read_mmocr_det(root: Path, path: Path) -> list[dict]:
    out = []
    for item in _json(path).get("data_list", []):
        regions = [{"points": [[float(x), float(y)] for x, y in zip(inst["polygon"][::2], inst["polygon"][1::2])],
                    "text": _ignore(str(inst.get("text", "")), bool(inst.get("ignore")))} for inst in item.get("instances", [])]
        out.append({"file": _under(root, path, item["img_path"]), "regions": regions})
    return out


# -- crop readers ---------------------------------------------------------------------------------------------
def read_paddle_rec(root: Path, label_file: Path | None = None) -> list[dict]:
    path = label_file or _paddle_list(root, scenes=False)
    out = []
    for line in _text(path).splitlines():
        if line.strip():
            name, _, text = line.partition("\t")
            out.append({"file": _under(root, path, name), "text": text})
    return out


def read_kuplus_wzsb(root: Path) -> list[dict]:
    path = next(root.rglob(KUPLUS_FILES["kuplus_wzsb"]))
    return [{"file": _under(root, path, str(e["image"]).rstrip(",")), "text": str(e.get("label", ""))} for e in _json(path)]


def read_mmocr_rec(root: Path, path: Path) -> list[dict]:
    return [{"file": _under(root, path, item["img_path"]), "text": str(item["instances"][0]["text"])}
            for item in _json(path).get("data_list", []) if item.get("instances")]


def read_labels_csv(root: Path) -> list[dict]:
    path = next(root.rglob("labels.csv"))
    rows = list(csv.reader(io.StringIO(_text(path))))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["filename", "words"]:
        raise fail("LABEL_FILE_INVALID", path.name, "labels.csv needs the header filename,words.")
    return [{"file": _under(root, path, row[0]), "text": ",".join(row[1:])} for row in rows[1:] if row]


# -- which layout -----------------------------------------------------------------------------------------------
def _under(root: Path, label_file: Path, name: str) -> str:
    """An image path from a label file, relative to the root: found beside the label file, else from the root;
    as written when it is in neither (the import reports it as a missing file)."""
    for base in (label_file.parent, root):
        if (base / name).is_file():
            return (base / name).relative_to(root).as_posix()
    return name


def _paddle_list(root: Path, scenes: bool) -> Path:
    for path in sorted(root.rglob("*.txt")):
        first = next((line for line in _head(path).splitlines() if line.strip()), "")
        name, tab, rest = first.partition("\t")
        if tab and Path(name).suffix.lower() in IMAGE_SUFFIXES and rest.lstrip().startswith("[") == scenes:
            return path
    raise fail("UNKNOWN_OCR_FORMAT", [], f"No PaddleOCR {'detection' if scenes else 'recognition'} list was found.")


def _mmocr(root: Path, task: str) -> Path | None:
    for path in sorted(root.rglob("*.json")):
        head = _head(path)
        if re.search(rf'"task_name"\s*:\s*"{task}"', head):
            return path
    return None


def detect_layout(root: Path) -> str:
    """The layout of the folder `root`: Ku+ files by name first, then MMOCR JSON, labels.csv, PaddleOCR lists,
    ICDAR 2015 ground-truth files."""
    for layout, name in KUPLUS_FILES.items():
        if next(root.rglob(name), None):
            return layout
    for layout, task in (("mmocr_det", "textdet"), ("mmocr_rec", "textrecog")):
        if _mmocr(root, task):
            return layout
    if next(root.rglob("labels.csv"), None):
        return "labels_csv"
    for layout, scenes in (("paddle_det", True), ("paddle_rec", False)):
        try:
            _paddle_list(root, scenes)
            return layout
        except DatasetError:
            pass
    if next(root.rglob("gt_*.txt"), None):
        return "icdar2015"
    raise fail("UNKNOWN_OCR_FORMAT", [])


def read_layout(root: Path, layout: str = "auto") -> tuple[str, list[dict]]:
    """(layout, entries) of the folder `root`: scene entries have `regions`, crop entries have `text`."""
    layout = detect_layout(root) if layout == "auto" else layout
    readers: dict[str, Callable[[], list[dict]]] = {
        "icdar2015": lambda: read_icdar2015(root), "icdar2015_folders": lambda: read_icdar2015(root),
        "paddle_det": lambda: read_paddle_det(root), "kuplus_wzjc": lambda: read_kuplus_scenes(root, KUPLUS_FILES["kuplus_wzjc"]),
        "kuplus_dddwzsb": lambda: read_kuplus_scenes(root, KUPLUS_FILES["kuplus_dddwzsb"]),
        "mmocr_det": lambda: read_mmocr_det(root, _mmocr(root, "textdet")), "paddle_rec": lambda: read_paddle_rec(root),
        "kuplus_wzsb": lambda: read_kuplus_wzsb(root), "mmocr_rec": lambda: read_mmocr_rec(root, _mmocr(root, "textrecog")),
        "labels_csv": lambda: read_labels_csv(root)}
    return layout, readers[layout]()


# -- writers (the generator's) ----------------------------------------------------------------------------------
def write_ocr(dest: Path, layout: str, *, count: int = 20, seed: int = 0, languages: tuple[str, ...] = ("en",),
              width: int = 320, height: int = 240) -> Path:
    """`count` seeded scenes (a scene layout) or crops (a crop layout) written to the new folder `dest` in `layout`."""
    rng = random.Random(seed)
    dest.mkdir(parents=True)
    if layout in CROP_LAYOUTS:
        items = []
        for i in range(count):
            image, text = crop(rng, languages)
            name = f"word_{i + 1}.jpg"
            image.save(dest / name, quality=95)
            items.append((name, text))
        _write_crops(dest, layout, items)
        return dest
    if layout not in SCENE_LAYOUTS:
        raise ValueError(f"unknown OCR layout {layout!r}")
    folder = dest / ("ch4_training_images" if layout == "icdar2015_folders" else "images" if layout != "icdar2015" else "")
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(count):
        s = scene(rng, width, height, languages)
        name = f"img_{i + 1}.jpg"
        s.image.save(folder / name, quality=95)
        items.append((folder.relative_to(dest) / name, s.regions))
    _write_scenes(dest, layout, items)
    return dest


def _write_scenes(dest: Path, layout: str, items: list[tuple[Path, list[dict]]]) -> None:
    if layout.startswith("icdar2015"):
        gt_folder = dest / "ch4_training_localization_transcription_gt" if layout == "icdar2015_folders" else dest
        gt_folder.mkdir(exist_ok=True)
        for path, regions in items:
            lines = [",".join(str(int(round(v))) for p in r["points"] for v in p) + "," + r["text"] for r in regions]
            (gt_folder / f"gt_{path.stem}.txt").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    elif layout == "paddle_det":
        (dest / "Label.txt").write_text("".join(
            f"{p.as_posix()}\t{json.dumps([{'transcription': r['text'], 'points': r['points']} for r in regions], ensure_ascii=False)}\n"
            for p, regions in items), encoding="utf-8")
    elif layout in ("kuplus_wzjc", "kuplus_dddwzsb"):
        entries = [{"image": p.as_posix(), "data": [{"label": r["text"], "points": [{"x": x, "y": y} for x, y in r["points"]]}
                                                     for r in regions]} for p, regions in items]
        (dest / KUPLUS_FILES[layout]).write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    else:  # mmocr_det
        data = [{"img_path": p.as_posix(), "instances": [
            {"polygon": [v for pt in r["points"] for v in pt], "bbox_label": 0, "ignore": r["text"] == DONT_CARE,
             "text": r["text"]} for r in regions]} for p, regions in items]
        (dest / "textdet_train.json").write_text(json.dumps({"metainfo": {"dataset_type": "TextDetDataset", "task_name": "textdet",
                                                                          "category": [{"id": 0, "name": "text"}]},
                                                             "data_list": data}, ensure_ascii=False), encoding="utf-8")


def _write_crops(dest: Path, layout: str, items: list[tuple[str, str]]) -> None:
    if layout == "paddle_rec":
        (dest / "rec_gt_train.txt").write_text("".join(f"{n}\t{t}\n" for n, t in items), encoding="utf-8")
    elif layout == "kuplus_wzsb":  # with the stray comma of Ku+'s own example
        (dest / KUPLUS_FILES[layout]).write_text(json.dumps([{"image": f"{n},", "label": t} for n, t in items],
                                                            ensure_ascii=False), encoding="utf-8")
    elif layout == "mmocr_rec":
        data = [{"img_path": n, "instances": [{"text": t}]} for n, t in items]
        (dest / "textrecog_train.json").write_text(json.dumps({"metainfo": {"dataset_type": "TextRecogDataset",
                                                                            "task_name": "textrecog"}, "data_list": data},
                                                              ensure_ascii=False), encoding="utf-8")
    else:  # labels_csv
        with open(dest / "labels.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("filename", "words"), *items])
