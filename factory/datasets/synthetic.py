"""Data that ships offline: scikit-learn's digits as images, seeded views of scikit-image's sample photos, and a
seeded synthetic shape generator."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_digits(dest: Path, size: int = 32) -> Path:
    """scikit-learn's 1797 handwritten digits (8x8, real handwriting) as PNGs, one folder per class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        img = Image.fromarray((pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")
        folder = dest / DIGIT_NAMES[int(target)]
        folder.mkdir(parents=True, exist_ok=True)
        img.resize((size, size), Image.Resampling.BILINEAR).save(folder / f"digit_{i:04d}.png")
    return dest


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour: tuple) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r / 3)))
    elif shape == "bar":
        draw.rectangle((cx - r, cy - r / 4, cx + r, cy + r / 4), fill=colour)


def shape_image(shape: str, rng: random.Random, size: int = 64) -> Image.Image:
    """One image of `shape` at a random place, size and colour on a noisy background."""
    noise = np.random.default_rng(rng.randrange(2**32)).integers(0, 60, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise + np.uint8(rng.randrange(0, 120)), "RGB")
    r = rng.uniform(size * 0.18, size * 0.35)
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    colour = tuple(rng.randrange(140, 256) for _ in range(3))
    draw_shape(ImageDraw.Draw(img), shape, cx, cy, r, colour)
    return img


def write_shapes(dest: Path, *, classes: int = 3, per_class: int = 30, size: int = 64, seed: int = 0,
                 layout: str = "folder_per_class") -> Path:
    """Seeded synthetic classification data in one of the import layouts.

    layout: `folder_per_class` (dest/<class>/*.png), `split_folders` (dest/train|val|test/<class>/),
    `kuplus_txfl` (folders + txfl-result.json) or `csv` (flat images + labels.csv).
    """
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"classes must be 1..{len(SHAPES)}")
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for shape in SHAPES[:classes]:
        for i in range(per_class):
            split = ("train", "train", "train", "train", "train", "train", "train", "val", "test", "test")[i % 10]
            rel = {"folder_per_class": f"{shape}/{shape}_{i:03d}.png",
                   "split_folders": f"{split}/{shape}/{shape}_{i:03d}.png",
                   "kuplus_txfl": f"{shape}/{shape}_{i:03d}.png",
                   "csv": f"images/{shape}_{i:03d}.png"}[layout]
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shape_image(shape, rng, size).save(dest / rel)
            rows.append((rel, shape))
    if layout == "kuplus_txfl":
        import json

        cats = [{"name": s, "images": [{"url": p} for p, lab in rows if lab == s]} for s in SHAPES[:classes]]
        (dest / "txfl-result.json").write_text(json.dumps({"categories": cats}))
    elif layout == "csv":
        (dest / "labels.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return dest


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "grass",
          "gravel", "brick")  # bundled with scikit-image (no download); the last three are grey textures


def load_photos() -> list[Image.Image]:
    """scikit-image's bundled sample photos (no download), as RGB images."""
    from skimage import data

    out = []
    for name in PHOTOS:
        pixels = getattr(data, name)()
        out.append(Image.fromarray(pixels if pixels.ndim == 3 else np.stack([pixels] * 3, axis=2)).convert("RGB"))
    return out


def photo_crop(photo: Image.Image, rng: random.Random, size: int) -> Image.Image:
    """A random view of `photo`: 15-50 % of its short side, turned up to 15 degrees, colours jittered, at times grey."""
    w, h = photo.size
    side = rng.uniform(0.15, 0.5) * min(w, h)
    cx, cy = rng.uniform(side / 2, w - side / 2), rng.uniform(side / 2, h - side / 2)
    view = photo.rotate(rng.uniform(-15, 15), center=(cx, cy), resample=Image.Resampling.BILINEAR)
    view = view.crop((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)).resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(view, np.float32)
    arr = (arr - arr.mean()) * rng.uniform(0.6, 1.4) + arr.mean() * rng.uniform(0.6, 1.4)
    arr = arr * np.array([rng.uniform(0.85, 1.15) for _ in range(3)], np.float32)
    if rng.random() < 0.1:
        arr = np.repeat(arr.mean(axis=2, keepdims=True), 3, axis=2)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def write_photos(dest: Path, *, per_class: int = 120, size: int = 192, seed: int = 0) -> Path:
    """Photo-like classification data that ships offline: seeded random views of scikit-image's sample photos,
    one class (folder) per photo. Real photographic texture and colour, unlike the shape generator."""
    from skimage import data

    rng = random.Random(seed)
    for name in PHOTOS:
        pixels = getattr(data, name)()
        photo = Image.fromarray(pixels if pixels.ndim == 3 else np.stack([pixels] * 3, axis=2)).convert("RGB")
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            photo_crop(photo, rng, size).save(dest / name / f"{name}_{i:04d}.jpg", quality=90)
    return dest
