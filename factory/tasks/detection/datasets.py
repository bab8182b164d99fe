"""Detection datasets: import (any layout of detection_formats -> image checks -> box checks ->
stratified split -> statistics -> publish), export back to COCO, YOLO or VOC, and a seeded
synthetic generator (shapes on noisy backgrounds) in every layout, for tests and the demo."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from factory.catalog import Catalog
from factory.datasets.issues import IssueLog
from factory.datasets.publish import Progress, check_all, drop_bad, write_version
from factory.datasets.splits import carve
from factory.datasets.synthetic import SHAPES, draw_shape
from factory.errors import ConfigError
from factory.tasks.detection.formats import (DETECTION_FORMATS, Box, check_boxes, coco_json,
                                            detect_detection_format, voc_xml, yolo_line)
from factory.workspace import Workspace

SMALL, MEDIUM = 32 ** 2, 96 ** 2
EXPORT_FORMATS = ("coco", "yolo", "voc")


def box_stats(manifest: list[dict], classes: list[str]) -> dict:
    """Boxes per class, per size (COCO's area rule) and per image."""
    boxes = [b for m in manifest for b in m["boxes"]]
    areas = [b["bbox"][2] * b["bbox"][3] for b in boxes]
    per_image = [len(m["boxes"]) for m in manifest]
    dims = lambda key: {"min": min(m[key] for m in manifest), "median": float(np.median([m[key] for m in manifest])),  # noqa: E731
                        "max": max(m[key] for m in manifest)} if manifest else {}
    return {"num_images": len(manifest), "num_boxes": len(boxes), "num_classes": len(classes),
            "negative_images": sum(1 for n in per_image if n == 0),
            "boxes_per_class": {c: sum(1 for b in boxes if b["label"] == c) for c in classes},
            "boxes_by_size": {"small": sum(a < SMALL for a in areas), "medium": sum(SMALL <= a < MEDIUM for a in areas),
                              "large": sum(a >= MEDIUM for a in areas)},
            "boxes_per_image": {"min": min(per_image, default=0), "median": float(np.median(per_image)) if per_image else 0,
                                "max": max(per_image, default=0)},
            "images_per_class": {c: sum(1 for m in manifest if any(b["label"] == c for b in m["boxes"])) for c in classes},
            "width": dims("width"), "height": dims("height")}


def import_detection(ws: Workspace, catalog: Catalog, root: Path, name: str, *, fmt: str = "auto", seed: int = 0,
                     progress: Progress | None = None) -> dict:
    """Import the opened folder `root` (any layout of DETECTION_FORMATS) as a new version of dataset `name`."""
    log = IssueLog()
    chosen = detect_detection_format(root) if fmt == "auto" else fmt
    records = DETECTION_FORMATS.get(chosen)().read(root, log)
    by_path = {r.path: r for r in records}
    checked = drop_bad(check_all(root, records, progress), log)
    declared = {c for r in records for c in r.classes} or None
    seen: dict[str, str] = {}
    kept = []
    for c in checked:
        if c.check.sha256 in seen:
            log.add("DUPLICATE_IMAGE", c.record.path, f"(kept {seen[c.check.sha256]})")
            continue
        seen[c.check.sha256] = c.record.path
        by_path[c.record.path].boxes = check_boxes(by_path[c.record.path], c.check.width, c.check.height, declared, log)
        kept.append(c)
    classes = sorted({b.label for c in kept for b in by_path[c.record.path].boxes} | (declared or set()))
    negatives = [c.record.path for c in kept if not by_path[c.record.path].boxes]
    if negatives:
        log.add("NEGATIVE_IMAGES", negatives)
    if not any(by_path[c.record.path].boxes for c in kept):
        log.add("EMPTY_DATASET", detail="(no image has a usable box)")
    log.raise_if_errors()
    strata = [Counter(b.label for b in by_path[c.record.path].boxes).most_common(1)[0][0]
              if by_path[c.record.path].boxes else "_negative" for c in kept]
    splits = carve(strata, [c.record.split for c in kept], seed)
    manifest = [{"file": f"images/{c.check.sha256[:16]}{Path(c.record.path).suffix.lower()}", "split": s,
                 "boxes": [{"label": b.label, "bbox": [round(v, 3) for v in b.xywh()]} for b in by_path[c.record.path].boxes],
                 "label": None, "source": c.record.path, "sha256": c.check.sha256, "width": c.check.width,
                 "height": c.check.height, "mode": c.check.mode} for c, s in zip(kept, splits)]
    return write_version(ws, catalog, root, name, "detection", chosen, classes, manifest, box_stats(manifest, classes),
                         log, seed, progress)


def export_detection(ws: Workspace, row: dict, fmt: str, dest: Path) -> Path:
    """Write dataset `row` (a detection dataset) to `dest` in `fmt` (coco, yolo or voc), splits kept."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}.", fix=f"Use one of: {', '.join(EXPORT_FORMATS)}.")
    root = ws.home / row["path"]
    manifest = json.loads((root / "manifest.json").read_text())
    items = [(m, f"{m['split']}/{Path(m['file']).name}",
              [Box(b["label"], *b["bbox"]) for b in m["boxes"]]) for m in manifest]
    write_records(dest, fmt, [(rel, m["width"], m["height"], boxes, root / m["file"]) for m, rel, boxes in items],
                  row["classes"])
    return dest


def write_records(dest: Path, fmt: str, items: list[tuple[str, int, int, list[Box], Path | Image.Image]],
                  classes: list[str]) -> None:
    """items: (relative image path like 'train/a.png', width, height, boxes, image file or PIL image)."""
    def put(image, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target) if isinstance(image, Image.Image) else shutil.copyfile(image, target)

    if fmt == "coco":
        for rel, _, _, _, image in items:
            put(image, dest / rel)
        (dest / "annotations.json").write_text(json.dumps(coco_json([(r, w, h, b) for r, w, h, b, _ in items], classes)))
    elif fmt == "yolo":
        for rel, w, h, boxes, image in items:
            split, file = rel.split("/", 1) if "/" in rel else ("train", rel)
            put(image, dest / "images" / split / file)
            label = (dest / "labels" / split / file).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(yolo_line(b, classes, w, h) + "\n" for b in boxes))
        splits = sorted({r.split("/", 1)[0] for r, *_ in items if "/" in r})
        (dest / "data.yaml").write_text(yaml.safe_dump({"path": ".", **{s: f"images/{s}" for s in splits},
                                                        "names": dict(enumerate(classes))}, sort_keys=False))
    elif fmt == "voc":
        for rel, w, h, boxes, image in items:
            put(image, dest / rel)
            (dest / rel).with_suffix(".xml").write_text(voc_xml(Path(rel).name, w, h, boxes))
    else:
        raise ConfigError(f"Unknown detection layout {fmt!r}.", fix=f"Use one of: {', '.join(EXPORT_FORMATS)}.")


def synthetic_scene(rng: random.Random, classes: list[str], size: int, max_objects: int = 4) -> tuple[Image.Image, list[Box]]:
    """Shapes of every size on a noisy background; boxes tight around each shape, overlaps limited."""
    noise = np.random.default_rng(rng.randrange(2 ** 32)).integers(0, 70, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise + np.uint8(rng.randrange(0, 110)), "RGB")
    draw, boxes = ImageDraw.Draw(img), []
    for _ in range(rng.randint(0 if rng.random() < 0.08 else 1, max_objects)):
        label = rng.choice(classes)
        r = rng.choice([rng.uniform(6, 14), rng.uniform(16, 40), rng.uniform(45, size * 0.3)])
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        if any(abs(cx - (b.x + b.w / 2)) < (r + b.w / 2) * 0.8 and abs(cy - (b.y + b.h / 2)) < (r + b.h / 2) * 0.8 for b in boxes):
            continue
        draw_shape(draw, label, cx, cy, r, tuple(rng.randrange(140, 256) for _ in range(3)))
        top = cy - r / 4 if label == "bar" else cy - r
        height = r / 2 if label == "bar" else 2 * r
        boxes.append(Box(label, round(cx - r, 2), round(top, 2), round(2 * r, 2), round(height, 2)))
    return img, boxes


def write_detection(dest: Path, *, images: int = 60, size: int = 320, classes: int = 3, seed: int = 0,
                    layout: str = "coco") -> Path:
    """Seeded synthetic detection data in `layout`: coco, yolo, voc, kuplus_txkt, modelarts_manifest, csv_coordinates."""
    rng = random.Random(seed)
    names = list(SHAPES[:classes])
    items = []
    for i in range(images):
        img, boxes = synthetic_scene(rng, names, size)
        split = ("train",) * 8 + ("val", "test")
        items.append((f"{split[i % 10]}/scene_{i:04d}.png", size, size, boxes, img))
    if layout in EXPORT_FORMATS:
        write_records(dest, layout, items, names)
    elif layout == "kuplus_txkt":
        write_records(dest, "coco", items, names)
        (dest / "annotations.json").unlink()
        entries = [{"image": rel, "data": [{"bbox": {"x": b.x, "y": b.y, "width": b.w, "height": b.h}, "label": b.label,
                                            "shape": "rect"} for b in boxes]} for rel, _, _, boxes, _ in items]
        (dest / "txkt-result.json").write_text(json.dumps(entries))
    elif layout == "modelarts_manifest":
        write_records(dest, "voc", items, names)
        lines = [json.dumps({"source": f"s3://bucket/data/{Path(rel).name}", "usage": {"train": "TRAIN", "val": "EVAL", "test": "TEST"}[rel.split("/")[0]],
                             "annotation": [{"type": "modelarts/object_detection", "annotation-loc":
                                             f"s3://bucket/data/{Path(rel).with_suffix('.xml').name}", "annotation-format": "PASCAL VOC"}]})
                 for rel, *_ in items]
        (dest / "dataset-v1.manifest").write_text("\n".join(lines) + "\n")
    elif layout == "csv_coordinates":
        write_records(dest, "coco", items, names)
        (dest / "annotations.json").unlink()
        rows = ["FILE_NAME,LABEL_VALUE,LABEL_COORDINATE"]
        for rel, _, _, boxes, _ in items:
            rows += [f'{rel},{b.label},"[{b.x},{b.y},{round(b.x + b.w, 2)},{round(b.y + b.h, 2)}]"' for b in boxes] or [f"{rel},,"]
        (dest / "labels.csv").write_text("\n".join(rows) + "\n")
    else:
        raise ConfigError(f"Unknown layout {layout!r}.", fix="Use coco, yolo, voc, kuplus_txkt, modelarts_manifest or csv_coordinates.")
    return dest
