"""Object-detection dataset layouts: a reader (and for COCO, YOLO and VOC a writer) each, found
through `DETECTION_FORMATS`. Boxes are [x, y, w, h] in pixels everywhere inside the factory.

Readers report what they cannot use to the issue log with the file (and line) and go on; boxes
are checked against the image size afterwards, once, for every format (`check_boxes`).
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

import yaml

from factory.datasets.images import is_image
from factory.datasets.issues import IssueLog, fail, register_codes
from factory.datasets.source import walk_files
from factory.registry import Registry

DETECTION_CODES = register_codes({
    "UNKNOWN_DETECTION_FORMAT": ("error", "No supported detection layout was found.",
                                 "Use Pascal VOC XML beside the images (or in Annotations/), a COCO JSON, a YOLO "
                                 "data.yaml with images/ and labels/, a Ku+ txkt-result.json, a ModelArts .manifest, "
                                 "or a CSV with FILE_NAME, LABEL_VALUE, LABEL_COORDINATE; or pass --format."),
    "ANNOTATION_UNREADABLE": ("warning", "Annotation files that cannot be parsed were skipped (file and line given).",
                              "Fix the syntax at the position given, or remove the file."),
    "ANNOTATION_WITHOUT_IMAGE": ("warning", "Annotations name images that are not in the data; they were skipped.",
                                 "Add the images, or remove their annotations."),
    "IMAGE_WITHOUT_ANNOTATION": ("warning", "Images without an annotation file were left out (not treated as empty).",
                                 "Add an annotation for each (an empty one marks an image with no objects)."),
    "UNKNOWN_CLASS": ("warning", "Boxes with a class that the label list does not define were dropped.",
                      "Add the class to the category list (COCO categories, YOLO names) or fix the class id."),
    "BOX_DEGENERATE": ("warning", "Boxes under 2 px wide or high, or with min > max, were dropped.",
                       "Fix the coordinates; a box needs a width and a height of at least 2 px."),
    "BOX_CLIPPED": ("warning", "Boxes partly outside the image (less than half their area) were clipped to it.",
                    "Nothing to do if the clipped boxes look right; otherwise fix their coordinates."),
    "BOX_OUTSIDE_IMAGE": ("warning", "Boxes with half or more of their area outside the image were dropped.",
                          "Fix the coordinates (are they relative where pixels are expected, or the other way round?)."),
    "NEGATIVE_IMAGES": ("note", "Images annotated with no objects are kept as negatives (they teach the model "
                        "what is not an object).", "Nothing to do."),
})
TXKT_FILE = "txkt-result.json"
MIN_BOX_PX = 2.0
SPLITS = {"train": "train", "val": "val", "valid": "val", "test": "test", "TRAIN": "train", "EVAL": "val", "TEST": "test"}


@dataclass
class Box:
    label: str
    x: float
    y: float
    w: float
    h: float

    def xywh(self) -> list[float]:
        return [self.x, self.y, self.w, self.h]


@dataclass
class DetRecord:
    path: str  # relative to the dataset root, POSIX
    boxes: list[Box] = field(default_factory=list)
    split: str | None = None
    classes: tuple[str, ...] = ()  # the class list the file declared, when it declares one


class DetectionFormat(Protocol):
    name: str
    description: str

    def detect(self, root: Path) -> bool: ...

    def read(self, root: Path, log: IssueLog) -> list[DetRecord]: ...


DETECTION_FORMATS: Registry[DetectionFormat] = Registry("detection format")


def _safe(rel: str, where: str) -> str:
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        raise fail("UNSAFE_PATH", where, f"({rel})")
    return str(posix)


def _images(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in walk_files(root) if is_image(p)}


# -- Pascal VOC ------------------------------------------------------------------------------------
def parse_voc(path: Path, rel: str, log: IssueLog) -> tuple[str | None, list[Box]] | None:
    """(image file name or None, boxes) of one VOC XML file; None when it cannot be parsed."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        log.add("ANNOTATION_UNREADABLE", f"{rel} (line {exc.position[0]}, column {exc.position[1]})")
        return None
    boxes = []
    for obj in tree.getroot().iter("object"):
        name, bb = obj.findtext("name"), obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            log.add("ANNOTATION_UNREADABLE", f"{rel} (an <object> without a numeric <bndbox>)")
            continue
        boxes.append(Box((name or "").strip(), x1, y1, x2 - x1, y2 - y1))
    return tree.getroot().findtext("filename"), boxes


@DETECTION_FORMATS.register("voc")
class Voc:
    name, description = "voc", "Pascal VOC XML next to each image, or in Annotations/ (PAI, ModelArts)"

    def detect(self, root: Path) -> bool:
        return any(p.suffix.lower() == ".xml" for p in walk_files(root))

    def read(self, root: Path, log: IssueLog) -> list[DetRecord]:
        images = _images(root)
        by_stem = {}
        for rel in images:
            by_stem.setdefault(PurePosixPath(rel).stem, rel)
        records, used = [], set()
        for xml in sorted(p for p in walk_files(root) if p.suffix.lower() == ".xml"):
            rel = xml.relative_to(root).as_posix()
            parsed = parse_voc(xml, rel, log)
            if parsed is None:
                continue
            filename, boxes = parsed
            beside = PurePosixPath(rel).with_suffix("")
            candidates = [f"{beside}{ext}" for ext in (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".PNG")]
            image = next((c for c in candidates if c in images), None) or by_stem.get(PurePosixPath(filename or "").stem) \
                or by_stem.get(beside.name)
            if image is None:
                log.add("ANNOTATION_WITHOUT_IMAGE", rel)
                continue
            used.add(image)
            records.append(DetRecord(image, boxes, _split_of(image)))
        missing = sorted(set(images) - used)
        if missing:
            log.add("IMAGE_WITHOUT_ANNOTATION", missing)
        return records


def voc_xml(filename: str, width: int, height: int, boxes: list[Box]) -> str:
    objects = "".join(
        f"<object><name>{b.label}</name><difficult>0</difficult><bndbox><xmin>{_num(b.x)}</xmin><ymin>{_num(b.y)}</ymin>"
        f"<xmax>{_num(b.x + b.w)}</xmax><ymax>{_num(b.y + b.h)}</ymax></bndbox></object>" for b in boxes)
    return (f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objects}</annotation>\n")


# -- COCO ------------------------------------------------------------------------------------------
def _coco_file(root: Path) -> Path | None:
    for p in sorted(walk_files(root)):
        if p.suffix.lower() == ".json" and p.name != TXKT_FILE:
            try:
                head = p.read_text(encoding="utf-8", errors="replace")[:4000]
            except OSError:
                continue
            if '"images"' in head or '"annotations"' in head:  # parse errors are reported by the reader
                return p
    return None


@DETECTION_FORMATS.register("coco")
class Coco:
    name, description = "coco", "COCO JSON (images, annotations, categories) with the images beside it"

    def detect(self, root: Path) -> bool:
        return _coco_file(root) is not None

    def read(self, root: Path, log: IssueLog) -> list[DetRecord]:
        path = _coco_file(root)
        rel = path.relative_to(root).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cats = {c["id"]: str(c["name"]) for c in data["categories"]}
            images = {im["id"]: im["file_name"] for im in data["images"]}
        except json.JSONDecodeError as exc:
            raise fail("LABEL_FILE_INVALID", rel, f"(line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        except (KeyError, TypeError) as exc:
            raise fail("LABEL_FILE_INVALID", rel, f"(missing {exc} in images / categories)") from None
        base = path.parent.relative_to(root).as_posix()
        present = _images(root)
        boxes: dict[int, list[Box]] = {i: [] for i in images}
        unknown = []
        for ann in data.get("annotations", []):
            if ann.get("category_id") not in cats:
                unknown.append(f"{images.get(ann.get('image_id'), '?')} (category {ann.get('category_id')})")
                continue
            if ann.get("image_id") in boxes:
                x, y, w, h = (float(v) for v in ann["bbox"])
                boxes[ann["image_id"]].append(Box(cats[ann["category_id"]], x, y, w, h))
        if unknown:
            log.add("UNKNOWN_CLASS", unknown)
        records = []
        for image_id, name in images.items():
            file = _resolve(present, _safe(name, rel), base)
            if file is None:
                log.add("ANNOTATION_WITHOUT_IMAGE", name)
                continue
            records.append(DetRecord(file, boxes[image_id], _split_of(file), tuple(cats.values())))
        return records


def _resolve(present: dict[str, Path], name: str, base: str) -> str | None:
    """The image a label file names: relative to the label file, to the root, under images/, or by a
    file name that is unique in the data (manifests name object-storage paths)."""
    for candidate in (f"{base}/{name}" if base not in ("", ".") else name, name, f"{base}/images/{name}", f"images/{name}"):
        if candidate in present:
            return candidate
    matches = [rel for rel in present if PurePosixPath(rel).name == PurePosixPath(name).name]
    return matches[0] if len(matches) == 1 else None


def coco_json(records: list[tuple[str, int, int, list[Box]]], classes: list[str]) -> dict:
    ids = {c: i + 1 for i, c in enumerate(classes)}
    images, annotations = [], []
    for image_id, (file, width, height, boxes) in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": file, "width": width, "height": height})
        for b in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[b.label],
                                "bbox": [_num(v) for v in b.xywh()], "area": _num(b.w * b.h), "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": [{"id": i, "name": c} for c, i in ids.items()]}


# -- YOLO ------------------------------------------------------------------------------------------
def _data_yaml(root: Path) -> Path | None:
    return next((p for p in sorted(walk_files(root)) if p.name in ("data.yaml", "data.yml", "dataset.yaml")), None)


@DETECTION_FORMATS.register("yolo")
class Yolo:
    name, description = "yolo", "Ultralytics layout: data.yaml (names) + images/<split>/ + labels/<split>/*.txt"

    def detect(self, root: Path) -> bool:
        return _data_yaml(root) is not None

    def read(self, root: Path, log: IssueLog) -> list[DetRecord]:
        spec_path = _data_yaml(root)
        rel_spec = spec_path.relative_to(root).as_posix()
        try:
            spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
            names = spec["names"]
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise fail("LABEL_FILE_INVALID", rel_spec, f"(needs a `names` list: {exc})") from None
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
        base = spec_path.parent
        records = []
        for image in sorted(p for p in walk_files(base) if is_image(p) and "images" in p.relative_to(base).parts):
            parts = list(image.relative_to(base).parts)
            parts[parts.index("images")] = "labels"
            label_file = base.joinpath(*parts).with_suffix(".txt")
            rel = image.relative_to(root).as_posix()
            if not label_file.is_file():
                log.add("IMAGE_WITHOUT_ANNOTATION", rel)
                continue
            w, h = _image_size(image)
            boxes = []
            for n, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    k, cx, cy, bw, bh = line.split()[:5]
                    k, cx, cy, bw, bh = int(k), float(cx), float(cy), float(bw), float(bh)
                except ValueError:
                    log.add("ANNOTATION_UNREADABLE", f"{label_file.relative_to(root).as_posix()} (line {n})")
                    continue
                if not 0 <= k < len(names):
                    log.add("UNKNOWN_CLASS", f"{label_file.relative_to(root).as_posix()} (line {n}: class {k})")
                    continue
                boxes.append(Box(str(names[k]), (cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h))
            records.append(DetRecord(rel, boxes, _split_of(rel), tuple(map(str, names))))
        return records


def yolo_line(box: Box, classes: list[str], width: int, height: int) -> str:
    cx, cy = (box.x + box.w / 2) / width, (box.y + box.h / 2) / height
    return f"{classes.index(box.label)} {cx:.10f} {cy:.10f} {box.w / width:.10f} {box.h / height:.10f}"


# -- Ku+ txkt, ModelArts manifest, CSV ----------------------------------------------------------------
@DETECTION_FORMATS.register("kuplus_txkt")
class KuplusTxkt:
    name, description = "kuplus_txkt", "Ku+ MLOps txkt-result.json (per image: data[] of rect bboxes in pixels)"

    def detect(self, root: Path) -> bool:
        return any(p.name == TXKT_FILE for p in walk_files(root))

    def read(self, root: Path, log: IssueLog) -> list[DetRecord]:
        path = next(p for p in walk_files(root) if p.name == TXKT_FILE)
        rel = path.relative_to(root).as_posix()
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise fail("LABEL_FILE_INVALID", rel, f"(line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        present, base = _images(root), path.parent.relative_to(root).as_posix()
        records = []
        for entry in entries if isinstance(entries, list) else []:
            file = _resolve(present, _safe(str(entry.get("image", "")), rel), base)
            if file is None:
                log.add("ANNOTATION_WITHOUT_IMAGE", str(entry.get("image")))
                continue
            boxes = [Box(str(d["label"]), float(d["bbox"]["x"]), float(d["bbox"]["y"]), float(d["bbox"]["width"]),
                         float(d["bbox"]["height"])) for d in entry.get("data", []) if d.get("shape", "rect") == "rect"]
            records.append(DetRecord(file, boxes, _split_of(file)))
        return records


@DETECTION_FORMATS.register("modelarts_manifest")
class ModelArtsManifest:
    name, description = "modelarts_manifest", "ModelArts .manifest (JSON Lines; object_detection annotation-loc -> VOC XML)"

    def detect(self, root: Path) -> bool:
        return any(p.suffix == ".manifest" for p in walk_files(root))

    def read(self, root: Path, log: IssueLog) -> list[DetRecord]:
        path = next(p for p in sorted(walk_files(root)) if p.suffix == ".manifest")
        rel, present = path.relative_to(root).as_posix(), _images(root)
        base = path.parent.relative_to(root).as_posix()
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                source = PurePosixPath(str(item["source"]).split("://")[-1]).name
            except (json.JSONDecodeError, KeyError, TypeError):
                log.add("ANNOTATION_UNREADABLE", f"{rel} (line {n})")
                continue
            file = _resolve(present, source, base)
            if file is None:
                log.add("ANNOTATION_WITHOUT_IMAGE", f"{source} ({rel} line {n})")
                continue
            boxes = []
            for ann in item.get("annotation") or []:
                loc = PurePosixPath(str(ann.get("annotation-loc", "")).split("://")[-1]).name
                xml = next((p for p in walk_files(root) if p.name == loc), None) if loc else None
                if xml is None:
                    log.add("ANNOTATION_WITHOUT_IMAGE", f"{loc or '?'} (annotation-loc of {source}, not in the data)")
                    continue
                parsed = parse_voc(xml, xml.relative_to(root).as_posix(), log)
                boxes += parsed[1] if parsed else []
            records.append(DetRecord(file, boxes, SPLITS.get(str(item.get("usage", "")), None)))
        return records


@DETECTION_FORMATS.register("csv_coordinates")
class CsvCoordinates:
    name, description = "csv_coordinates", "CSV rows FILE_NAME, LABEL_VALUE, LABEL_COORDINATE \"[xmin,ymin,xmax,ymax]\""

    def detect(self, root: Path) -> bool:
        return any(p.suffix.lower() == ".csv" and "LABEL_COORDINATE" in p.read_text(errors="replace")[:500]
                   for p in walk_files(root))

    def read(self, root: Path, log: IssueLog) -> list[DetRecord]:
        path = next(p for p in walk_files(root) if p.suffix.lower() == ".csv")
        rel, present = path.relative_to(root).as_posix(), _images(root)
        base = path.parent.relative_to(root).as_posix()
        by_file: dict[str, DetRecord] = {}
        with open(path, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                name = _safe(row.get("FILE_NAME", ""), rel)
                file = _resolve(present, name, base)
                if file is None:
                    log.add("ANNOTATION_WITHOUT_IMAGE", f"{name} ({rel} line {n})")
                    continue
                record = by_file.setdefault(file, DetRecord(file, [], _split_of(file)))
                coords = (row.get("LABEL_COORDINATE") or "").strip()
                if not coords or not row.get("LABEL_VALUE"):
                    continue  # a row without a box: an image with no objects
                try:
                    x1, y1, x2, y2 = (float(v) for v in json.loads(coords))
                except (json.JSONDecodeError, ValueError, TypeError):
                    log.add("ANNOTATION_UNREADABLE", f"{rel} (line {n}: {coords[:40]})")
                    continue
                record.boxes.append(Box(row["LABEL_VALUE"].strip(), x1, y1, x2 - x1, y2 - y1))
        return list(by_file.values())


# -- shared -------------------------------------------------------------------------------------------
def _split_of(rel: str) -> str | None:
    return next((SPLITS[p] for p in PurePosixPath(rel).parts[:-1] if p in SPLITS), None)


def _image_size(path: Path) -> tuple[int, int]:
    from factory.datasets.images import open_image

    with open_image(path) as img:
        return img.size


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)


def detect_detection_format(root: Path) -> str:
    """The first layout that claims `root` (most specific first)."""
    for name in ("kuplus_txkt", "modelarts_manifest", "yolo", "coco", "csv_coordinates", "voc"):
        if DETECTION_FORMATS.get(name)().detect(root):
            return name
    raise fail("UNKNOWN_DETECTION_FORMAT")


def check_boxes(record: DetRecord, width: int, height: int, classes: set[str] | None, log: IssueLog) -> list[Box]:
    """ModelArts' rules: unknown class and degenerate (< 2 px, or min > max) boxes dropped; a box less
    than half outside the image clipped to it, half or more outside dropped."""
    kept = []
    for b in record.boxes:
        where = f"{record.path} ({b.label} at {_num(b.x)},{_num(b.y)} {_num(b.w)}x{_num(b.h)})"
        if classes is not None and b.label not in classes or not b.label:
            log.add("UNKNOWN_CLASS", where)
            continue
        if b.w < MIN_BOX_PX or b.h < MIN_BOX_PX:
            log.add("BOX_DEGENERATE", where)
            continue
        x1, y1, x2, y2 = max(b.x, 0), max(b.y, 0), min(b.x + b.w, width), min(b.y + b.h, height)
        inside = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        if inside < b.w * b.h - 1e-6:
            if inside <= 0.5 * b.w * b.h:
                log.add("BOX_OUTSIDE_IMAGE", where)
                continue
            log.add("BOX_CLIPPED", where)
            if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
                continue
            b = Box(b.label, x1, y1, x2 - x1, y2 - y1)
        kept.append(b)
    return kept
