"""OCR datasets: import (any layout of factory.tasks.ocr.formats -> image checks -> polygon and text checks ->
split -> statistics -> publish), for scenes (images with text polygons) and crops (word or line images).

A folder with `train/`, `test/` (and `val/`) subfolders keeps that split. Every check has a catalogue code with
its fix; nothing is dropped silently: characters the given dictionary lacks are listed, never removed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factory.catalog import Catalog
from factory.datasets.images import open_image
from factory.datasets.issues import IssueLog, register_codes
from factory.datasets.publish import Progress, check_all, write_version
from factory.datasets.splits import carve
from factory.i18n import has_han
from factory.tasks.ocr.formats import read_layout
from factory.tasks.ocr.metrics import DONT_CARE, polygon
from factory.workspace import Workspace

MAX_TEXT = 64  # characters the recognizer reads in one line
MIN_CROP_HEIGHT = 8
EXIF_ORIENTATION = 0x0112
OCR_ISSUES = register_codes({
    "POLYGON_OUTSIDE_IMAGE": ("warning", "Text polygons reach outside their image; they were clipped to it (those "
                              "with half or more outside were dropped).", "Check the coordinates of these files."),
    "POLYGON_INVALID": ("warning", "Text polygons that cross themselves or have no area were dropped.",
                        "List the corners in order around the text (clockwise from its top-left)."),
    "POLYGON_TOO_FEW_POINTS": ("warning", "Text polygons with fewer than 4 points were dropped.",
                               "Give at least 4 corners per text region."),
    "EMPTY_TRANSCRIPTION": ("warning", "Text regions or crops without a transcription were dropped (### marks a "
                            "region to ignore).", "Type the text, or mark the region ### if it cannot be read."),
    "CHARACTERS_NOT_IN_DICTIONARY": ("warning", "Some texts use characters that the dictionary given does not hold; "
                                     "they are kept (and added to the model's dictionary), not dropped.",
                                     "Add these characters to the dictionary file, or leave --dict out."),
    "TEXT_TOO_LONG": ("warning", f"Texts longer than {MAX_TEXT} characters were left out of recognition.",
                      "Split long lines into shorter regions."),
    "CROP_TOO_SMALL": ("warning", f"Crops under {MIN_CROP_HEIGHT} px high were left out.",
                       "Crop the words with some margin, from a sharper picture."),
    "EXIF_ROTATED": ("warning", "Images carry an EXIF rotation; their labels are read in the stored pixels, as "
                     "annotation tools draw them, and the rotation is ignored.",
                     "If the labels were drawn on the turned picture, save the images turned (without the tag)."),
})


@dataclass
class OcrRecord:
    path: str
    split: str | None
    regions: list[dict] | None = None  # scenes
    text: str | None = None  # crops
    problems: list[str] = field(default_factory=list)


def read_records(root: Path, fmt: str) -> tuple[str, list[OcrRecord]]:
    """The layout and records of `root`, each `train/`, `val/`, `test/` subfolder read on its own (its split kept)."""
    splits = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    if not splits:
        layout, entries = read_layout(root, fmt)
        return layout, [_record(e, None) for e in entries]
    records, layout = [], fmt
    for split in splits:
        layout, entries = read_layout(root / split, fmt)
        records += [_record({**e, "file": f"{split}/{e['file']}"}, split) for e in entries]
    return layout, records


def _record(entry: dict, split: str | None) -> OcrRecord:
    return OcrRecord(entry["file"], split, entry.get("regions"), entry.get("text"))


def clean_regions(regions: list[dict], width: int, height: int, log: IssueLog, where: str) -> list[dict]:
    """Regions with at least 4 points, valid, inside the image (clipped; dropped when half or more is outside),
    with a transcription; ### regions are kept as don't-care."""
    from shapely.geometry import box as rectangle

    frame, out = rectangle(0, 0, width, height), []
    for r in regions:
        if len(r["points"]) < 4:
            log.add("POLYGON_TOO_FEW_POINTS", where)
            continue
        shape = polygon(r["points"])
        if shape is None:
            log.add("POLYGON_INVALID", where)
            continue
        if not r["text"].strip():
            log.add("EMPTY_TRANSCRIPTION", where)
            continue
        inside = shape.intersection(frame)
        if inside.area < shape.area - 1e-6:
            log.add("POLYGON_OUTSIDE_IMAGE", where)
            if inside.area <= shape.area / 2:
                continue
            points = np.clip(np.asarray(r["points"], float), 0, [width, height]).round(2).tolist()
            r = {**r, "points": points}
        out.append(r)
    return out


def text_stats(texts: list[str], manifest: list[dict]) -> dict:
    """Character set with counts, text length histogram, and for scenes the polygon sizes and angles."""
    chars = Counter(c for t in texts for c in t)
    lengths = Counter(min(len(t), 40) // 5 * 5 for t in texts)
    heights, angles = [], []
    for m in manifest:
        for r in m.get("regions") or []:
            p = np.asarray(r["points"], float)
            heights.append(float(np.linalg.norm(p[3] - p[0])))
            angles.append(math.degrees(math.atan2(p[1][1] - p[0][1], p[1][0] - p[0][0])))
    summary = lambda v: {"min": round(min(v), 1), "median": round(float(np.median(v)), 1), "max": round(max(v), 1)} if v else {}  # noqa: E731
    return {"num_images": len(manifest), "num_texts": len(texts), "characters": dict(chars.most_common()),
            "num_characters": len(chars), "text_length": {f"{k}-{k + 4}": n for k, n in sorted(lengths.items())},
            "text_height_px": summary(heights), "angle_deg": summary(angles),
            "languages": sorted({"zh" if has_han(c) else "latin" for c in chars if not c.isspace()})}


def import_ocr(ws: Workspace, catalog: Catalog, root: Path, name: str, *, fmt: str = "auto", seed: int = 0,
               dictionary: str | None = None, progress: Progress | None = None) -> dict:
    """Import the opened folder `root` (an OCR layout) as a new version of dataset `name`."""
    log = IssueLog()
    layout, records = read_records(root, fmt)
    checked = []
    for c in check_all(root, records, progress):
        small_crop = c.record.text is not None and c.check.problem == "IMAGE_TOO_SMALL" and c.check.height >= MIN_CROP_HEIGHT
        if c.check.problem and not small_crop:
            log.add("CROP_TOO_SMALL" if c.check.problem == "IMAGE_TOO_SMALL" and c.record.text is not None
                    else c.check.problem, c.record.path)
            continue
        with open_image(root / c.record.path) as img:
            if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
                log.add("EXIF_ROTATED", c.record.path)
        checked.append(c)
    manifest, texts = [], []
    for c in checked:
        entry = {"file": f"images/{c.check.sha256[:16]}{Path(c.record.path).suffix.lower()}", "source": c.record.path,
                 "sha256": c.check.sha256, "width": c.check.width, "height": c.check.height, "mode": c.check.mode,
                 "label": None, "split": c.record.split}
        if c.record.regions is not None:
            entry["regions"] = clean_regions(c.record.regions, c.check.width, c.check.height, log, c.record.path)
            texts += [r["text"] for r in entry["regions"] if r["text"] != DONT_CARE]
        else:
            if not (c.record.text or "").strip():
                log.add("EMPTY_TRANSCRIPTION", c.record.path)
                continue
            entry["text"] = c.record.text
            texts.append(c.record.text)
        manifest.append(entry)
    if too_long := [t for t in texts if len(t) > MAX_TEXT]:
        log.add("TEXT_TOO_LONG", [], f"({len(too_long)} texts, the longest {max(map(len, too_long))} characters)")
    if dictionary is not None:
        missing = sorted({c for t in texts for c in t} - set(dictionary))
        if missing:
            log.add("CHARACTERS_NOT_IN_DICTIONARY", [], f"Missing: {' '.join(missing[:50])}" + (" ..." if len(missing) > 50 else ""))
    if not texts:
        log.add("EMPTY_DATASET", detail="(no image has a readable text)")
    log.raise_if_errors()
    splits = carve(["scene" if "regions" in m else "crop" for m in manifest], [m.pop("split") for m in manifest], seed)
    for m, s in zip(manifest, splits):
        m["split"] = s
    characters = sorted({c for t in texts for c in t} | set(dictionary or ""))
    return write_version(ws, catalog, root, name, "ocr", layout, characters, manifest, text_stats(texts, manifest),
                         log, seed, progress)
