// Image classification on the phone page: softmax top-k of the logits (the twin of the task's NumPy
// post-processing, factory/tasks/classification), the best label written over the picture.
import { caption } from "../draw.js";

export function softmaxTopK(logits, classes, k) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e, i) => ({ label: classes[i], index: i, score: e / sum }))
    .sort((a, b) => b.score - a.score).slice(0, Math.min(k, classes.length));
}

// raw outputs of one picture -> what the page keeps of them
export function decode(raw, meta) {
  return { logits: Array.from(raw), top: softmaxTopK(raw, meta.classes, 5) };
}

// the result's items (best first) and the one-line summary; writes data-* attributes tests and people read
export function show(result, el, canvas) {
  const items = result.top;
  el.dataset.label = items[0].label;
  el.dataset.score = items[0].score.toFixed(6);
  el.textContent = `${items[0].label} ${(items[0].score * 100).toFixed(1)}%`;
  caption(canvas, el.textContent);
  return items;
}

// the server's answer for the same picture, in words
export function serverSummary(body) {
  const first = body.predictions[0];
  return `${first.label} ${(first.score * 100).toFixed(1)}%`;
}
