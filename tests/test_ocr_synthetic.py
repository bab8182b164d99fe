"""The OCR generator: seeded, varied, and true to its labels (polygons inside the image, valid, apart, around
text drawn in Latin and CJK fonts)."""

from __future__ import annotations

import random

import numpy as np

from factory.tasks.ocr.metrics import polygon
from factory.tasks.ocr.synthetic import crop, scene


def test_scenes_are_seeded_and_their_polygons_are_valid_inside_and_apart():
    a, b = scene(random.Random(7), languages=("en", "zh")), scene(random.Random(7), languages=("en", "zh"))
    assert a.regions == b.regions and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    texts = set()
    for seed in range(30):
        s = scene(random.Random(seed), languages=("en", "zh"))
        assert s.image.size == (320, 240) and 1 <= len(s.regions) <= 6
        shapes = [polygon(r["points"]) for r in s.regions]
        assert all(p is not None for p in shapes)
        assert all(0 <= x < 320 and 0 <= y < 240 for r in s.regions for x, y in r["points"])
        assert all(not p.intersects(q) for i, p in enumerate(shapes) for q in shapes[i + 1:])
        texts |= {r["text"] for r in s.regions}
    assert len(texts) > 60 and any(any("\u4e00" <= c <= "\u9fff" for c in t) for t in texts)
    assert any(t.isascii() for t in texts)
    assert scene(random.Random(8)).regions != a.regions  # another seed, another scene


def test_text_regions_hold_ink_and_crops_hold_their_text():
    s = scene(random.Random(3), languages=("en",))
    pixels = np.asarray(s.image.convert("L"), np.float32)
    for r in s.regions:  # the text region differs from a plain area: there are strokes in it
        xs, ys = [p[0] for p in r["points"]], [p[1] for p in r["points"]]
        inside = pixels[int(min(ys)):int(max(ys)), int(min(xs)):int(max(xs))]
        assert inside.std() > 10, r
    for seed in range(10):
        image, text = crop(random.Random(seed), languages=("en", "zh"))
        assert text and image.height >= 48 and image.width >= image.height
