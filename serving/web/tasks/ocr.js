// OCR on the phone page: both networks in the browser, as factory/tasks/ocr/pipeline.py's Reader composes them.
// The detector reads the picture at its long side (each side a multiple of 32), its probability map gives the
// text boxes (ocr_post.js, held to the NumPy post-processing by a browser test), each box is cut out upright as
// high as the recognizer reads (32 px, PP-OCRv4's 48) at its own width, and the recognizer reads it (CTC greedy).
// Lines are drawn with their text, listed in reading order, and one button copies all the text.

import { t } from "../i18n.js";
import { resizeBilinear } from "../preprocess.js";
import { ctcDecode, dbBoxes, readingOrder } from "../ocr_post.js";

const roundEven = (v) => { const r = Math.round(v); return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r; };

// the detector's input: the picture at the long side `side`, each side a multiple of 32, normalised (NCHW)
function detectorInput(rgba, width, height, pre) {
  const side = pre.resize[0], scale = side / Math.max(width, height);
  const w = Math.max(32, roundEven((width * scale) / 32) * 32), h = Math.max(32, roundEven((height * scale) / 32) * 32);
  const rgb = resizeBilinear(rgba, width, height, w, h), plane = w * h, input = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) input[c * plane + i] = (rgb[i * 3 + c] * pre.scale - pre.mean[c]) / pre.std[c];
  return { input, w, h };
}

const dist = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);

// A box (4 corners clockwise from the top-left) cut out of the picture by bilinear quad mapping, `height` px high at
// its aspect ratio (width a multiple of the recognizer's stride, at least `height`, at most `maxWidth`), normalised for the recognizer.
// A box much taller than wide (vertical text) is turned to read left to right, as the server does.
export function cropInput(rgba, width, height, points, rec) {
  const [tl, tr, br, bl] = points;
  const boxW = Math.max(dist(tl, tr), dist(bl, br), 1), boxH = Math.max(dist(tl, bl), dist(tr, br), 1);
  const vertical = boxH >= 1.5 * boxW;
  const [along, across] = vertical ? [boxH, boxW] : [boxW, boxH];
  const step = rec.width_multiple || 4;  // the recognizer's stride: one time step per `step` px of width
  const outH = rec.height, outW = Math.min(rec.max_width, Math.max(outH, roundEven((along * outH) / across / step) * step));
  const plane = outW * outH, input = new Float32Array(3 * plane);
  for (let y = 0; y < outH; y++) for (let x = 0; x < outW; x++) {
    const un = (x + 0.5) / outW, vn = (y + 0.5) / outH;
    const [u, v] = vertical ? [1 - vn, un] : [un, vn];  // turned a quarter counter-clockwise
    const sx = tl[0] + (tr[0] - tl[0]) * u + (bl[0] - tl[0]) * v + (br[0] - bl[0] - tr[0] + tl[0]) * u * v - 0.5;
    const sy = tl[1] + (tr[1] - tl[1]) * u + (bl[1] - tl[1]) * v + (br[1] - bl[1] - tr[1] + tl[1]) * u * v - 0.5;
    const x0 = Math.floor(sx), y0 = Math.floor(sy), fx = sx - x0, fy = sy - y0;
    for (let c = 0; c < 3; c++) {
      const at = (xx, yy) => rgba[(Math.min(Math.max(yy, 0), height - 1) * width + Math.min(Math.max(xx, 0), width - 1)) * 4 + c];
      const value = (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy;
      input[c * plane + y * outW + x] = (value / 255 - rec.mean[c]) / rec.std[c];
    }
  }
  return { input, w: outW, h: outH };
}

function softmax(logits, steps, classes) {
  const out = new Float32Array(logits.length);
  for (let s = 0; s < steps; s++) {
    let max = -Infinity, sum = 0;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[s * classes + c]);
    for (let c = 0; c < classes; c++) { out[s * classes + c] = Math.exp(logits[s * classes + c] - max); sum += out[s * classes + c]; }
    for (let c = 0; c < classes; c++) out[s * classes + c] /= sum;
  }
  return out;
}

// The picture's text lines in reading order, each {points, text, score, boxScore}, and the time per stage
export async function read({ sessions, rgba, width, height, meta }) {
  const pre = meta.preprocessing, post = meta.postprocessing, rec = pre.recognizer;
  const t0 = performance.now();
  const det = detectorInput(rgba, width, height, pre);
  const out = await sessions.detector.run({ input: new ort.Tensor("float32", det.input, [1, 3, det.h, det.w]) });
  const boxes = dbBoxes(out.logits.data, det.h, det.w, width, height, {
    thresh: post.db.thresh, boxThresh: post.db.box_thresh, unclipRatio: post.db.unclip_ratio,
    maxCandidates: post.db.max_candidates, minSize: post.db.min_size });
  const t1 = performance.now();
  const lines = [];
  let cropping = 0;
  for (const box of boxes) {
    const c0 = performance.now();
    const crop = cropInput(rgba, width, height, box.points, rec);
    cropping += performance.now() - c0;
    const logits = (await sessions.recognizer.run({ input: new ort.Tensor("float32", crop.input, [1, 3, crop.h, crop.w]) })).logits;
    const [, steps, classes] = logits.dims;
    const read = ctcDecode(softmax(logits.data, steps, classes), steps, classes, post.alphabet);
    if (read.text) lines.push({ points: box.points, text: read.text, score: read.score, boxScore: box.score });
  }
  const t2 = performance.now();
  return { ms: t2 - t0, lines: readingOrder(lines), stages: { detection: t1 - t0, cropping, recognition: t2 - t1 - cropping } };
}

function drawLines(ctx, lines, width) {
  const line = Math.max(2, Math.round(width / 320)), size = Math.max(12, 6 * line);
  ctx.lineWidth = line; ctx.font = `${size}px sans-serif`; ctx.textBaseline = "bottom";
  for (const l of lines) {
    ctx.strokeStyle = "#00c853";
    ctx.beginPath();
    l.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath(); ctx.stroke();
    const [x, y] = l.points[0], tw = ctx.measureText(l.text).width + 6;
    ctx.fillStyle = "#00c853"; ctx.fillRect(x, Math.max(0, y - size - 4), tw, size + 4);
    ctx.fillStyle = "#000"; ctx.fillText(l.text, x + 3, Math.max(size + 2, y - 2));
  }
}

function copyButton(el) {
  let button = document.getElementById("copy");
  if (!button) {
    button = document.createElement("button");
    button.id = "copy"; button.type = "button";
    button.addEventListener("click", async () => {
      const text = button.dataset.text || "";
      try { await navigator.clipboard.writeText(text); } catch {  // no clipboard API (plain HTTP): the old way
        const area = document.createElement("textarea");
        area.value = text; document.body.appendChild(area); area.select(); document.execCommand("copy"); area.remove();
      }
      button.textContent = t("Copied");
    });
    el.after(button);
  }
  return button;
}

export function show(result, el, canvas) {
  const lines = result.lines, all = lines.map((l) => l.text).join("\n");
  el.dataset.count = String(lines.length);
  el.dataset.label = lines.length ? lines[0].text : "";
  el.dataset.text = all;
  el.textContent = lines.length ? t("{count} line(s) of text", { count: lines.length }) : t("no text found");
  const button = copyButton(el);
  button.dataset.text = all; button.disabled = !lines.length; button.textContent = t("Copy all text");
  drawLines(canvas.getContext("2d"), lines, canvas.width);
  const s = result.stages;
  el.title = t("detection {det} ms, cropping {crop} ms, recognition {rec} ms",
               { det: s.detection.toFixed(1), crop: s.cropping.toFixed(1), rec: s.recognition.toFixed(1) });
  return lines.map((l) => ({ label: l.text, score: l.score }));
}

export function serverSummary(body) {
  const first = body.predictions[0];
  return t("{count} line(s) of text", { count: body.predictions.length }) + (first ? `: “${first.text}”` : "");
}
