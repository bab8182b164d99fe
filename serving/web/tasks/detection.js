// Object detection on the phone page: FCOS decoding with class-wise NMS (the twin of the task's NumPy
// post-processing, factory/tasks/detection/model.py), boxes mapped back to the picture and drawn on it.

import { t } from "../i18n.js";

function locations(spec) {
  const centers = [], strides = [];
  spec.strides.forEach((stride, level) => {
    const [h, w] = spec.feature_sizes[level];
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      centers.push([x * stride + Math.floor(stride / 2), y * stride + Math.floor(stride / 2)]);
      strides.push(stride);
    }
  });
  return [centers, strides];
}

export function nms(boxes, scores, iou) {
  const order = scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  const area = (b) => (b[2] - b[0]) * (b[3] - b[1]);
  const keep = [];
  let rest = order;
  while (rest.length) {
    const i = rest[0];
    keep.push(i);
    rest = rest.slice(1).filter((j) => {
      const iw = Math.max(0, Math.min(boxes[i][2], boxes[j][2]) - Math.max(boxes[i][0], boxes[j][0]));
      const ih = Math.max(0, Math.min(boxes[i][3], boxes[j][3]) - Math.max(boxes[i][1], boxes[j][1]));
      const inter = iw * ih;
      return inter / Math.max(area(boxes[i]) + area(boxes[j]) - inter, 1e-9) <= iou;
    });
  }
  return keep;
}

// raw: Float32Array [N * (C + 5)] of one image -> [{label, index, score, box: [x1, y1, x2, y2]}] in input pixels
export function decodeFcos(raw, spec) {
  const [centers, strides] = locations(spec);
  const c = spec.classes.length, row = c + 5, sig = (v) => 1 / (1 + Math.exp(-v));
  let cand = [];
  for (let n = 0; n < centers.length; n++) {
    const ctr = sig(raw[n * row + c + 4]);
    for (let k = 0; k < c; k++) {
      const s = Math.sqrt(sig(raw[n * row + k]) * ctr);
      if (s > spec.score_threshold) cand.push([n, k, s]);
    }
  }
  cand.sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1]);
  cand = cand.slice(0, spec.pre_nms_top_k);
  const boxes = cand.map(([n]) => {
    const d = [0, 1, 2, 3].map((j) => Math.exp(Math.min(raw[n * row + c + j], 12)) * strides[n]);
    return [centers[n][0] - d[0], centers[n][1] - d[1], centers[n][0] + d[2], centers[n][1] + d[3]];
  });
  const top = boxes.length ? boxes.reduce((m, b) => Math.max(m, ...b), -Infinity) + 1 : 0;  // class-wise NMS in one pass
  const shifted = boxes.map((b, i) => b.map((v) => v + cand[i][1] * top));
  return nms(shifted, cand.map((x) => x[2]), spec.nms_iou).slice(0, spec.max_detections)
    .map((i) => ({ label: spec.classes[cand[i][1]], index: cand[i][1], score: cand[i][2], box: boxes[i] }));
}

// Boxes from the letterboxed input back to the picture, clipped to it (factory.tasks.detection.unletterbox).
export function unletterbox(detections, scale, width, height) {
  const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
  return detections.map((d) => ({ ...d, box: [clip(d.box[0] / scale, width), clip(d.box[1] / scale, height),
                                               clip(d.box[2] / scale, width), clip(d.box[3] / scale, height)] }))
    .filter((d) => d.box[2] - d.box[0] > 0 && d.box[3] - d.box[1] > 0);
}

// raw outputs of one picture -> the detections scoring at least the server's minimum, in the picture's pixels
export function decode(raw, meta, { scale, width, height }) {
  const found = decodeFcos(raw, meta.postprocessing).filter((d) => d.score >= meta.min_score);
  return { raw: Array.from(raw), detections: unletterbox(found, scale, width, height) };
}

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#008080", "#9a6324"];

function drawBoxes(ctx, detections, width) {
  const line = Math.max(2, Math.round(width / 320));
  ctx.lineWidth = line; ctx.font = `${Math.max(12, 6 * line)}px sans-serif`; ctx.textBaseline = "top";
  for (const d of detections) {
    const [x1, y1, x2, y2] = d.box, color = PALETTE[d.index % PALETTE.length];
    const text = `${d.label} ${(d.score * 100).toFixed(0)}%`, th = Math.max(12, 6 * line) + 4;
    ctx.strokeStyle = color; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillStyle = color; ctx.fillRect(x1, Math.max(0, y1 - th), ctx.measureText(text).width + 6, th);
    ctx.fillStyle = "#fff"; ctx.fillText(text, x1 + 3, Math.max(0, y1 - th) + 2);
  }
}

export function show(result, el, canvas) {
  const items = result.detections;
  el.dataset.count = String(items.length);
  el.dataset.label = items.length ? items[0].label : "";
  const counts = Object.entries(items.reduce((n, d) => ({ ...n, [d.label]: (n[d.label] || 0) + 1 }), {}));
  el.textContent = items.length ? t("{count} object(s): {counts}", { count: items.length,
                                                                     counts: counts.map(([k, v]) => `${v} ${k}`).join(", ") })
    : t("nothing found");
  drawBoxes(canvas.getContext("2d"), items, canvas.width);
  return items;
}

export function serverSummary(body) {
  const first = body.predictions[0];
  return t("{count} object(s)", { count: body.predictions.length }) +
    (first ? t(", best {label} {score}%", { label: first.label, score: (first.score * 100).toFixed(1) }) : "");
}
