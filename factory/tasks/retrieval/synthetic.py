"""A seeded generator of identities for retrieval tests, the demo and the quality benchmark: each identity is
an object of its own (a few coloured shapes and marks on a tinted plate, like a product's packaging), and each of
its images shows it at another size, angle, position and light, pasted on a varied background (scikit-image's
photos, gradients, noise), at times blurred or JPEG-compressed. Identities of another seed are unseen ones.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from factory.datasets.synthetic import draw_shape, load_photos, photo_crop

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")


def identity_design(rng: random.Random) -> dict:
    """What makes an identity itself: plate colour and shape, and 3-5 marks (shape, colour, place, size)."""
    return {"plate": tuple(rng.randrange(30, 226) for _ in range(3)), "round": rng.random() < 0.3,
            "aspect": rng.uniform(0.6, 1.0),
            "marks": [(rng.choice(SHAPES), tuple(rng.randrange(0, 256) for _ in range(3)),
                       rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.22))
                      for _ in range(rng.randint(3, 5))],
            "stripes": rng.choice([0, 0, 2, 3, 4]), "stripe_colour": tuple(rng.randrange(0, 256) for _ in range(3))}


def render_object(design: dict, side: int) -> Image.Image:
    """The identity's object on a transparent square canvas of `side` pixels."""
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    h = side * design["aspect"]
    top = (side - h) / 2
    box = (2, top, side - 3, top + h)
    if design["round"]:
        draw.ellipse(box, fill=(*design["plate"], 255))
    else:
        draw.rounded_rectangle(box, radius=side * 0.08, fill=(*design["plate"], 255))
    for i in range(design["stripes"]):
        y = top + h * (i + 1) / (design["stripes"] + 1)
        draw.line((side * 0.1, y, side * 0.9, y), fill=(*design["stripe_colour"], 255), width=max(1, side // 30))
    for shape, colour, fx, fy, fr in design["marks"]:
        draw_shape(draw, shape, side * fx, top + h * fy, side * fr * design["aspect"], colour)
    return img


def _background(rng: random.Random, photos: list[Image.Image], size: int) -> Image.Image:
    kind = rng.random()
    if kind < 0.5:
        return photo_crop(rng.choice(photos), rng, size)
    if kind < 0.8:
        a, b = (np.array([rng.randrange(256) for _ in range(3)], np.float32) for _ in range(2))
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        grad = a * (1 - t) + b * t
        arr = np.broadcast_to(grad, (size, size, 3)).copy()
        if rng.random() < 0.5:
            arr = arr.transpose(1, 0, 2)
        return Image.fromarray(arr.astype(np.uint8), "RGB")
    noise = np.random.default_rng(rng.randrange(2**31)).integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(noise, "RGB").resize((size, size), Image.Resampling.BICUBIC)


def view(design: dict, rng: random.Random, photos: list[Image.Image], size: int) -> Image.Image:
    """One photo of the identity: object 45-85 % of the frame, turned up to 30 degrees, on a background."""
    scene = _background(rng, photos, size)
    side = int(size * rng.uniform(0.45, 0.85))
    obj = render_object(design, side).rotate(rng.uniform(-30, 30), resample=Image.Resampling.BICUBIC, expand=False)
    light = rng.uniform(0.7, 1.3)
    rgb = Image.eval(obj.convert("RGB"), lambda v: min(255, int(v * light)))
    scene.paste(rgb, (rng.randrange(0, size - side + 1), rng.randrange(0, size - side + 1)), obj.split()[3])
    if rng.random() < 0.3:
        scene = scene.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.3:
        buf = io.BytesIO()
        scene.save(buf, "JPEG", quality=rng.randrange(30, 70))
        scene = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return scene


def write_identities(dest: Path, *, identities: int = 40, per_identity: int = 8, size: int = 96, seed: int = 0,
                     layout: str = "folder_per_identity") -> Path:
    """Write `identities` x `per_identity` images in `layout`: folder_per_identity, ppshitu_list (images/ plus
    gallery_list.txt with labels that hold spaces) or tao (train/, reference/, query/: the last third of the
    identities, unseen in train/, is split into one reference and the rest queries)."""
    rng = random.Random(seed)
    photos = load_photos()
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(identities):
        design = identity_design(rng)
        label = f"item {seed}-{i:03d}" if layout == "ppshitu_list" else f"item_{seed}_{i:03d}"
        for j in range(per_identity):
            if layout == "tao":
                folder = "train" if i < identities * 2 // 3 else "reference" if j == 0 else "query"
                rel = f"{folder}/{label}/{j:03d}.jpg"
            elif layout == "ppshitu_list":
                rel = f"images/{i:03d}_{j:03d}.jpg"
                lines.append(f"{rel}\t{label}\n")
            else:
                rel = f"{label}/{j:03d}.jpg"
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            view(design, rng, photos, size).save(dest / rel, quality=92)
    if lines:
        (dest / "gallery_list.txt").write_text("".join(lines), encoding="utf-8")
    return dest
