"""The training data pipeline: cached and streamed loading agree; batch augmentation is sane."""

from __future__ import annotations

from pathlib import Path

import torch

from factory.training.data import ImageTensors, augment, batches, normalize


def _entries(root: Path) -> tuple[list[dict], list[str]]:
    entries = [{"file": str(p.relative_to(root)), "label": p.parent.name} for p in sorted(root.rglob("*.png"))]
    return entries, sorted({e["label"] for e in entries})


def test_streamed_loading_matches_the_cache(shapes_dir: Path):
    entries, classes = _entries(shapes_dir)
    cached = ImageTensors(shapes_dir, entries[:20], classes, 40, cache=True)
    streamed = ImageTensors(shapes_dir, entries[:20], classes, 40, cache=False)
    assert cached.images is not None and streamed.images is None
    for workers in (0, 2):
        got = list(batches(streamed, 8, shuffle=False, workers=workers))
        images = torch.cat([b[0] for b in got])
        labels = torch.cat([b[1] for b in got])
        assert torch.equal(images, cached.images) and torch.equal(labels, cached.labels)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = [b[1] for b in batches(cached, 8, shuffle=True, generator=g1)]
    b = [b[1] for b in batches(cached, 8, shuffle=True, generator=g2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # seeded shuffling is repeatable


def test_augment_normalises_and_is_seeded(shapes_dir: Path):
    entries, classes = _entries(shapes_dir)
    images = ImageTensors(shapes_dir, entries[:16], classes, 48).images
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    plain = normalize(images, mean, std)
    identity = augment(images, mean, std, hflip=0.0, crop_scale=1.0, color_jitter=0.0)
    assert torch.allclose(identity, plain, atol=1e-5)  # no augmentation: exactly the normalisation
    flipped = augment(images, mean, std, hflip=1.0, crop_scale=1.0, color_jitter=0.0,
                      generator=torch.Generator().manual_seed(0))
    assert flipped.shape == plain.shape
    # a full-area crop changes the aspect ratio by at most 4/3; the flip dominates the difference
    assert (flipped - plain.flip(-1)).abs().mean() < (flipped - plain).abs().mean()
    out1 = augment(images, mean, std, hflip=0.5, crop_scale=0.6, color_jitter=0.2, generator=torch.Generator().manual_seed(0))
    out2 = augment(images, mean, std, hflip=0.5, crop_scale=0.6, color_jitter=0.2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out1, out2) and not torch.allclose(out1, plain)
    # brightness/contrast jitter only: per image, an affine map of the normalised pixels
    jit = augment(images, mean, std, hflip=0.0, crop_scale=1.0, color_jitter=0.3, generator=torch.Generator().manual_seed(1))
    x, y = plain.flatten(2), jit.flatten(2)
    xc, yc = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    corr = (xc * yc).sum(-1) / (xc.norm(dim=-1) * yc.norm(dim=-1))
    assert torch.allclose(corr, torch.ones_like(corr), atol=1e-4) and not torch.allclose(jit, plain)
