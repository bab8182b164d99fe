"""OCR post-processing in NumPy, written to be twinned line for line in JavaScript for the phone page:

- DB boxes from the detector's probability map (PaddleOCR's `DBPostProcess` in quad mode, ocr-anchors.md §2.1):
  binarize at `thresh`; each 8-connected region of text pixels (up to `max_candidates`, largest first) gives its
  minimum-area rectangle; a rectangle under `min_size` on its short side is dropped; its score is the mean
  probability inside it, and it is dropped under `box_thresh`; it is unclipped by the distance area x
  `unclip_ratio` / perimeter (the rounded offset's own minimum-area rectangle is the rectangle grown by that
  distance on every side, which is what PaddleOCR takes after pyclipper), dropped under `min_size` + 2, and scaled
  to the image's pixels. The corners run clockwise from the top-left.
- CTC greedy decoding: the best class per time step, repeats collapsed, the blank (index 0) dropped; each kept
  character's probability is its score and the line's score is their mean.
- Reading order: top to bottom, then left to right within a line.
"""

from __future__ import annotations

import inspect

import numpy as np
from scipy import ndimage

def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the hull's vertices counter-clockwise (in image coordinates, y down: clockwise)."""
    pts = np.unique(points.astype(np.float64), axis=0)
    if len(pts) < 3:
        return pts

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-1] - out[-2], p - out[-2]) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(4 corners, width, height) of the smallest rectangle around `points` (rotating calipers over the hull)."""
    hull = convex_hull(points)
    if len(hull) < 3:  # a dot or a line of pixels
        lo, hi = hull.min(0), hull.max(0)
        return np.array([lo, [hi[0], lo[1]], hi, [lo[0], hi[1]]]), float(hi[0] - lo[0]), float(hi[1] - lo[1])
    best = None
    for i in range(len(hull)):
        edge = hull[(i + 1) % len(hull)] - hull[i]
        u = edge / np.linalg.norm(edge)
        v = np.array([-u[1], u[0]])
        a, b = hull @ u, hull @ v
        area = (a.max() - a.min()) * (b.max() - b.min())
        if best is None or area < best[0] - 1e-9:
            best = (area, u, v, a.min(), a.max(), b.min(), b.max())
    _, u, v, a0, a1, b0, b1 = best
    corners = np.array([a0 * u + b0 * v, a1 * u + b0 * v, a1 * u + b1 * v, a0 * u + b1 * v])
    return order_corners(corners), float(a1 - a0), float(b1 - b0)


def order_corners(corners: np.ndarray) -> np.ndarray:
    """Clockwise from the top-left (the two leftmost points, the upper one first; then the two others)."""
    by_x = corners[np.argsort(corners[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl])


def grow(corners: np.ndarray, distance: float) -> np.ndarray:
    """The rectangle `corners` (clockwise) grown by `distance` on every side."""
    center = corners.mean(0)
    u = corners[1] - corners[0]
    v = corners[3] - corners[0]
    u, v = u / (np.linalg.norm(u) or 1), v / (np.linalg.norm(v) or 1)
    out = []
    for p in corners:
        d = p - center
        out.append(p + np.sign(d @ u) * distance * u + np.sign(d @ v) * distance * v)
    return np.array(out)


def box_score(prob: np.ndarray, corners: np.ndarray) -> float:
    """Mean probability over the pixel centres inside the rectangle `corners`."""
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int), 0, [w - 1, h - 1])
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    u, v = corners[1] - corners[0], corners[3] - corners[0]
    rel = np.stack([xs - corners[0][0], ys - corners[0][1]], -1)
    a, b = rel @ u / (u @ u), rel @ v / (v @ v)
    inside = (a >= -1e-6) & (a <= 1 + 1e-6) & (b >= -1e-6) & (b <= 1 + 1e-6)
    window = prob[y0:y1 + 1, x0:x1 + 1]
    return float(window[inside].mean()) if inside.any() else 0.0


def db_boxes(prob: np.ndarray, width: int, height: int, *, thresh: float = 0.3, box_thresh: float = 0.6,
             unclip_ratio: float = 1.5, max_candidates: int = 1000, min_size: float = 3) -> list[dict]:
    """Text boxes from a probability map `prob` (H x W, the detector's output) in an image of `width` x `height`
    pixels: [{"points": [[x, y] x 4], "score": float}], clockwise from the top-left."""
    prob = np.asarray(prob, np.float32).reshape(prob.shape[-2:])
    labels, count = ndimage.label(prob > thresh, structure=np.ones((3, 3)))
    if not count:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")[:max_candidates]
    sx, sy = width / prob.shape[1], height / prob.shape[0]
    out = []
    for index in order:
        ys, xs = np.nonzero(labels == index + 1)
        corners, w, h = min_area_rect(np.stack([xs, ys], 1))
        if min(w, h) < min_size:
            continue
        score = box_score(prob, corners)
        if score < box_thresh:
            continue
        area, perimeter = w * h, 2 * (w + h)
        grown = grow(corners, area * unclip_ratio / perimeter)
        if min(np.linalg.norm(grown[1] - grown[0]), np.linalg.norm(grown[3] - grown[0])) < min_size + 2:
            continue
        scaled = np.clip(np.round(grown * [sx, sy]), 0, [width, height])
        out.append({"points": scaled.tolist(), "score": score})
    return out


def ctc_decode(probs: np.ndarray, alphabet: list[str]) -> list[dict]:
    """Greedy CTC over (N, T, C) class probabilities (index 0 the blank, `alphabet[i - 1]` class i):
    [{"text", "score", "char_scores"}] per line."""
    probs = np.asarray(probs)
    best, conf = probs.argmax(-1), probs.max(-1)
    lines = []
    for idx, p in zip(best, conf):
        keep = (idx != 0) & np.concatenate([[True], idx[1:] != idx[:-1]])
        chars = [alphabet[i - 1] for i in idx[keep]]
        scores = p[keep].astype(float).tolist()
        lines.append({"text": "".join(chars), "score": float(np.mean(scores)) if scores else 0.0, "char_scores": scores})
    return lines


def reading_order(lines: list[dict]) -> list[dict]:
    """Lines (with 4-point `points`) top to bottom; lines whose vertical centres are within half a line height of
    each other form one row, read left to right."""
    def centre(line):
        pts = np.asarray(line["points"], float)
        return pts[:, 0].mean(), pts[:, 1].mean(), pts[:, 1].max() - pts[:, 1].min()

    rows: list[list[dict]] = []
    for line in sorted(lines, key=lambda item: centre(item)[1]):
        _, cy, h = centre(line)
        if rows and abs(cy - np.mean([centre(x)[1] for x in rows[-1]])) < max(h, 1) / 2:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda item: centre(item)[0])]


def rectify(image, points, height: int = 32):
    """The text region `points` (4 corners clockwise from the top-left) cut out of the PIL `image` and warped
    upright to `height` pixels, keeping its aspect ratio; a region much taller than wide (vertical text) is turned
    to read left to right, as PaddleOCR does at a height/width ratio of 1.5."""
    from PIL import Image

    pts = np.asarray(points, np.float64)
    if len(pts) != 4:  # a polygon (curved text): its minimum-area rectangle, corners clockwise from the top-left
        pts = order_corners(min_area_rect(pts)[0])
    width_px = max(np.linalg.norm(pts[1] - pts[0]), np.linalg.norm(pts[2] - pts[3]), 1.0)
    height_px = max(np.linalg.norm(pts[3] - pts[0]), np.linalg.norm(pts[2] - pts[1]), 1.0)
    quad = [*pts[0], *pts[3], *pts[2], *pts[1]]  # PIL's QUAD: top-left, bottom-left, bottom-right, top-right
    crop = image.transform((int(round(width_px)), int(round(height_px))), Image.Transform.QUAD, quad,
                           resample=Image.Resampling.BICUBIC)
    if height_px >= 1.5 * width_px:
        crop = crop.transpose(Image.Transpose.ROTATE_90)
    return crop.resize((max(1, round(crop.width * height / crop.height)), height), Image.Resampling.BICUBIC)


# db_boxes' options as the model's metadata stores them (the phone page's twin reads the same keys)
DB_DEFAULTS = {k: p.default for k, p in inspect.signature(db_boxes).parameters.items() if p.kind is p.KEYWORD_ONLY}
