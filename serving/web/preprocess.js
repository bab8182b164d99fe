// Preprocessing of the phone page, the JavaScript twin of targets/predictor.py's `preprocess`: PIL's bilinear
// resize (antialiased, 22-bit fixed point, horizontal pass then vertical), a stretch or a letterbox as the
// metadata's spec says, scale + mean/std normalisation to NCHW float32. Each task's decoding and drawing is its
// own module, tasks/<task>.js. A browser test holds both sides to the same outputs on the same images.

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

// -- letterbox preprocessing (resize_mode "letterbox"), the twin of factory.datasets.images.letterbox -------
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

// The model's input for a picture as the metadata's preprocessing spec says: {input, scale} (scale maps input
// pixels back to the picture's; 1 for a stretch)
export function prepare(rgba, width, height, spec) {
  if (spec.resize_mode === "letterbox") return preprocessLetterbox(rgba, width, height, spec);
  return { input: preprocess(rgba, width, height, spec), scale: 1 };
}
