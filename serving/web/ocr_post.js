// OCR post-processing on the phone: the twin, step for step, of factory/tasks/ocr/postprocess.py (held to it by
// tests/test_browser.py). DB boxes from the detector's probability map, CTC greedy decoding, reading order.

export const DB_DEFAULTS = { thresh: 0.3, boxThresh: 0.6, unclipRatio: 1.5, maxCandidates: 1000, minSize: 3 };

// NumPy's round (half to even), so that both sides put a corner on the same pixel
function roundEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// 8-connected regions of prob > thresh, numbered in raster order of their first pixel (as scipy.ndimage.label)
function regions(prob, h, w, thresh) {
  const labels = new Int32Array(h * w);
  const out = [];
  for (let start = 0; start < h * w; start++) {
    if (labels[start] || !(prob[start] > thresh)) continue;
    const id = out.length + 1, pixels = [start];
    labels[start] = id;
    for (let k = 0; k < pixels.length; k++) {
      const y = Math.floor(pixels[k] / w), x = pixels[k] % w;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const yy = y + dy, xx = x + dx, j = yy * w + xx;
        if (yy >= 0 && yy < h && xx >= 0 && xx < w && !labels[j] && prob[j] > thresh) { labels[j] = id; pixels.push(j); }
      }
    }
    out.push(pixels.map((p) => [p % w, Math.floor(p / w)]));
  }
  return out;
}

const cross = (a, b) => a[0] * b[1] - a[1] * b[0];
const sub = (a, b) => [a[0] - b[0], a[1] - b[1]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1];
const norm = (a) => Math.hypot(a[0], a[1]);

export function convexHull(points) {
  const pts = [...new Map(points.map((p) => [`${p[0]},${p[1]}`, p])).values()]
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const half = (seq) => {
    const out = [];
    for (const p of seq) {
      while (out.length >= 2 && cross(sub(out[out.length - 1], out[out.length - 2]), sub(p, out[out.length - 2])) <= 0) out.pop();
      out.push(p);
    }
    return out;
  };
  const lower = half(pts), upper = half([...pts].reverse());
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

export function orderCorners(corners) {
  const byX = corners.map((p, i) => [p, i]).sort((a, b) => a[0][0] - b[0][0] || a[1] - b[1]).map(([p]) => p);
  const byY = (pair) => pair.map((p, i) => [p, i]).sort((a, b) => a[0][1] - b[0][1] || a[1] - b[1]).map(([p]) => p);
  const [tl, bl] = byY(byX.slice(0, 2)), [tr, br] = byY(byX.slice(2));
  return [tl, tr, br, bl];
}

export function minAreaRect(points) {
  const hull = convexHull(points);
  if (hull.length < 3) {
    const xs = hull.map((p) => p[0]), ys = hull.map((p) => p[1]);
    const lo = [Math.min(...xs), Math.min(...ys)], hi = [Math.max(...xs), Math.max(...ys)];
    return { corners: [lo, [hi[0], lo[1]], hi, [lo[0], hi[1]]], width: hi[0] - lo[0], height: hi[1] - lo[1] };
  }
  let best = null;
  for (let i = 0; i < hull.length; i++) {
    const edge = sub(hull[(i + 1) % hull.length], hull[i]), len = norm(edge);
    const u = [edge[0] / len, edge[1] / len], v = [-u[1], u[0]];
    const a = hull.map((p) => dot(p, u)), b = hull.map((p) => dot(p, v));
    const a0 = Math.min(...a), a1 = Math.max(...a), b0 = Math.min(...b), b1 = Math.max(...b);
    const area = (a1 - a0) * (b1 - b0);
    if (best === null || area < best.area - 1e-9) best = { area, u, v, a0, a1, b0, b1 };
  }
  const { u, v, a0, a1, b0, b1 } = best;
  const at = (s, t) => [s * u[0] + t * v[0], s * u[1] + t * v[1]];
  return { corners: orderCorners([at(a0, b0), at(a1, b0), at(a1, b1), at(a0, b1)]), width: a1 - a0, height: b1 - b0 };
}

export function grow(corners, distance) {
  const center = [0, 1].map((k) => corners.reduce((s, p) => s + p[k], 0) / 4);
  let u = sub(corners[1], corners[0]), v = sub(corners[3], corners[0]);
  u = u.map((c) => c / (norm(u) || 1)); v = v.map((c) => c / (norm(v) || 1));
  return corners.map((p) => {
    const d = sub(p, center), su = Math.sign(dot(d, u)), sv = Math.sign(dot(d, v));
    return [p[0] + su * distance * u[0] + sv * distance * v[0], p[1] + su * distance * u[1] + sv * distance * v[1]];
  });
}

export function boxScore(prob, h, w, corners) {
  const clip = (value, hi) => Math.min(Math.max(value, 0), hi);
  const x0 = clip(Math.floor(Math.min(...corners.map((p) => p[0]))), w - 1), y0 = clip(Math.floor(Math.min(...corners.map((p) => p[1]))), h - 1);
  const x1 = clip(Math.ceil(Math.max(...corners.map((p) => p[0]))), w - 1), y1 = clip(Math.ceil(Math.max(...corners.map((p) => p[1]))), h - 1);
  const u = sub(corners[1], corners[0]), v = sub(corners[3], corners[0]), uu = dot(u, u), vv = dot(v, v);
  let sum = 0, n = 0;
  for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) {
    const rel = [x - corners[0][0], y - corners[0][1]], a = dot(rel, u) / uu, b = dot(rel, v) / vv;
    if (a >= -1e-6 && a <= 1 + 1e-6 && b >= -1e-6 && b <= 1 + 1e-6) { sum += prob[y * w + x]; n++; }
  }
  return n ? sum / n : 0;
}

// prob: Float32Array of h x w; -> [{points: [[x, y] x 4], score}] in an image of width x height pixels
export function dbBoxes(prob, h, w, width, height, options = {}) {
  const o = { ...DB_DEFAULTS, ...options };
  const found = regions(prob, h, w, o.thresh)
    .map((pixels, index) => ({ pixels, index }))
    .sort((a, b) => b.pixels.length - a.pixels.length || a.index - b.index)
    .slice(0, o.maxCandidates);
  const sx = width / w, sy = height / h, out = [];
  for (const { pixels } of found) {
    const { corners, width: rw, height: rh } = minAreaRect(pixels);
    if (Math.min(rw, rh) < o.minSize) continue;
    const score = boxScore(prob, h, w, corners);
    if (score < o.boxThresh) continue;
    const grown = grow(corners, (rw * rh * o.unclipRatio) / (2 * (rw + rh)));
    if (Math.min(norm(sub(grown[1], grown[0])), norm(sub(grown[3], grown[0]))) < o.minSize + 2) continue;
    const points = grown.map(([x, y]) => [Math.min(Math.max(roundEven(x * sx), 0), width), Math.min(Math.max(roundEven(y * sy), 0), height)]);
    out.push({ points, score });
  }
  return out;
}

// probs: Float32Array of T x C (class 0 the blank) -> {text, score, charScores}
export function ctcDecode(probs, steps, classes, alphabet) {
  const chars = [], scores = [];
  let previous = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (probs[t * classes + c] > probs[t * classes + best]) best = c;
    if (best !== 0 && best !== previous) { chars.push(alphabet[best - 1]); scores.push(probs[t * classes + best]); }
    previous = best;
  }
  return { text: chars.join(""), score: scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : 0, charScores: scores };
}

export function readingOrder(lines) {
  const centre = (line) => {
    const ys = line.points.map((p) => p[1]);
    return [line.points.reduce((s, p) => s + p[0], 0) / line.points.length, ys.reduce((s, y) => s + y, 0) / ys.length,
            Math.max(...ys) - Math.min(...ys)];
  };
  const rows = [];
  for (const line of [...lines].sort((a, b) => centre(a)[1] - centre(b)[1])) {
    const [, cy, h] = centre(line);
    const last = rows[rows.length - 1];
    if (last && Math.abs(cy - last.reduce((s, l) => s + centre(l)[1], 0) / last.length) < Math.max(h, 1) / 2) last.push(line);
    else rows.push([line]);
  }
  return rows.flatMap((row) => row.sort((a, b) => centre(a)[0] - centre(b)[0]));
}
