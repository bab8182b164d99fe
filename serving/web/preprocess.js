// Pre- and post-processing of the phone page, the JavaScript twin of targets/predictor.py:
// PIL's bilinear resize (antialiased, 22-bit fixed point, horizontal pass then vertical),
// scale + mean/std normalisation to NCHW float32, and softmax + top-k.
// A browser test holds both to the same outputs on the same images.

const PRECISION_BITS = 22;

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const bounds = [], kernels = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5); if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5); if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const k = new Float64Array(xmax);
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      let t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1.0 ? 1.0 - t : 0.0;
      k[x] = w; ww += w;
    }
    const fixed = new Int32Array(xmax);
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      fixed[x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds.push(xmin); kernels.push(fixed);
  }
  return [bounds, kernels];
}

function clip8(ss) {
  const v = Math.floor(ss / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// rgba: Uint8ClampedArray (width*height*4) -> Uint8Array RGB (outW*outH*3), as PIL's Image.resize(BILINEAR)
export function resizeBilinear(rgba, width, height, outW, outH) {
  let src = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += 4) { src[i * 3] = rgba[j]; src[i * 3 + 1] = rgba[j + 1]; src[i * 3 + 2] = rgba[j + 2]; }
  let w = width, h = height;
  if (outW !== w) {
    const [bx, kx] = coefficients(w, outW);
    const dst = new Uint8Array(outW * h * 3);
    for (let y = 0; y < h; y++) for (let xx = 0; xx < outW; xx++) for (let c = 0; c < 3; c++) {
      let ss = 1 << (PRECISION_BITS - 1);
      const k = kx[xx], x0 = bx[xx];
      for (let x = 0; x < k.length; x++) ss += src[(y * w + x + x0) * 3 + c] * k[x];
      dst[(y * outW + xx) * 3 + c] = clip8(ss);
    }
    src = dst; w = outW;
  }
  if (outH !== h) {
    const [by, ky] = coefficients(h, outH);
    const dst = new Uint8Array(w * outH * 3);
    for (let yy = 0; yy < outH; yy++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) {
      let ss = 1 << (PRECISION_BITS - 1);
      const k = ky[yy], y0 = by[yy];
      for (let y = 0; y < k.length; y++) ss += src[((y + y0) * w + x) * 3 + c] * k[y];
      dst[(yy * w + x) * 3 + c] = clip8(ss);
    }
    src = dst; h = outH;
  }
  return src;
}

// RGBA pixels -> NCHW float32 per the artifact's preprocessing spec (resize, scale, mean, std)
export function preprocess(rgba, width, height, spec) {
  const [outH, outW] = spec.resize;
  const rgb = resizeBilinear(rgba, width, height, outW, outH);
  const plane = outW * outH;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) {
    out[c * plane + i] = (rgb[i * 3 + c] * spec.scale - spec.mean[c]) / spec.std[c];
  }
  return out;
}

export function softmaxTopK(logits, classes, k) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e, i) => ({ label: classes[i], index: i, score: e / sum }))
    .sort((a, b) => b.score - a.score).slice(0, Math.min(k, classes.length));
}

// -- detection: letterbox preprocessing and FCOS decoding, twins of factory/tasks/detection.py ----------
export function preprocessLetterbox(rgba, width, height, spec) {
  const size = spec.resize[0];
  const scale = size / Math.max(width, height);
  const w = Math.max(1, Math.round(width * scale)), h = Math.max(1, Math.round(height * scale));
  const rgb = resizeBilinear(rgba, width, height, w, h);
  const plane = size * size, pad = spec.pad_value ?? 114;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) for (let c = 0; c < 3; c++) {
    const v = x < w && y < h ? rgb[(y * w + x) * 3 + c] : pad;
    out[c * plane + y * size + x] = (v * spec.scale - spec.mean[c]) / spec.std[c];
  }
  return { input: out, scale };
}

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
