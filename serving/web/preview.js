// The phone preview page: loads the model's web artifact (ONNX) with onnxruntime-web served by
// this server (WASM first; WebGPU only with ?ep=webgpu), runs camera frames or picked photos through it on
// the phone, shows what the model's task makes of them (tasks/<task>.js: decoding and drawing, loaded from
// the artifact metadata's task), latency / FPS, compares with the server, and reports its latency back.
import { t, translatePage } from "./i18n.js";
import { prepare, preprocess, preprocessLetterbox } from "./preprocess.js";

const base = location.pathname.replace(/\/$/, "");
const params = new URLSearchParams(location.search);
const backend = params.get("ep") === "webgpu" ? "webgpu" : "wasm";
const $ = (id) => document.getElementById(id);
const times = [];
let session, sessions, meta, twin, lastBlob = null, streaming = false, reported = 0;

// the phone-page twin of a task (tasks/<name>.js): decode(raw, meta, {scale, width, height}) (may be async),
// show(result, el, canvas) -> items, serverSummary(body), and optionally init({meta, base, status}) once loaded;
// a model of several networks (meta.networks) has a session per network and read({sessions, rgba, width,
// height, meta}) -> {ms, ...} instead of decode
const task = (name) => import(`./tasks/${encodeURIComponent(name)}.js`).catch(() => GENERIC);

// a task without its own twin here (a plugin's): the raw outputs, and the server's predictions as they come
const GENERIC = {
  decode: (raw) => ({ raw: Array.from(raw) }),
  show: (result, el) => { el.textContent = t("{count} output value(s)", { count: result.raw.length }); return []; },
  serverSummary: (body) => t("{count} prediction(s): {json}", { count: body.predictions.length,
                                                                 json: JSON.stringify(body.predictions).slice(0, 120) }),
};

function status(text, cls = "") { const s = $("status"); s.textContent = text; s.className = cls; }

function loadScript(src) {
  return new Promise((ok, fail) => {
    const s = document.createElement("script");
    s.src = src; s.onload = ok; s.onerror = () => fail(new Error(`cannot load ${src}`));
    document.head.appendChild(s);
  });
}

async function init() {
  meta = await (await fetch(`${base}/meta`)).json();
  twin = await task(meta.task);
  if (twin.init) await twin.init({ meta, base, status });  // e.g. retrieval: the galleries this link may search
  await loadScript(`/static/ort/${backend === "webgpu" ? "ort.webgpu.min.js" : "ort.wasm.min.js"}`);
  ort.env.wasm.wasmPaths = "/static/ort/";
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const t0 = performance.now();
  if (meta.networks) {
    sessions = {};
    for (const name of Object.keys(meta.networks)) {
      sessions[name] = await ort.InferenceSession.create(`${base}/networks/${encodeURIComponent(name)}/model.onnx`,
                                                         { executionProviders: [backend] });
    }
  } else {
    session = await ort.InferenceSession.create(`${base}/model.onnx`, { executionProviders: [backend] });
  }
  $("backend").textContent = t("{backend} ({threads} thread(s)), loaded in {ms} ms",
                               { backend, threads: ort.env.wasm.numThreads, ms: (performance.now() - t0).toFixed(0) });
  status(t("Ready: take a photo or start the camera."), "ok");
}

function pixelsOf(source, width, height) {
  const canvas = $("view");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff";  // transparency becomes white, as on the server (factory.datasets.images.to_rgb)
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(source, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height).data;
}

export async function classifyPixels(rgba, width, height) {
  if (sessions) return twin.read({ sessions, rgba, width, height, meta });
  const { input, scale } = prepare(rgba, width, height, meta.preprocessing);
  const t0 = performance.now();
  const out = await session.run({ [meta.input_name]: new ort.Tensor("float32", input, meta.input_shape.map((d) => (d < 0 ? 1 : d))) });
  const ms = performance.now() - t0;
  return { ms, input, ...(await twin.decode(out[meta.output_name].data, meta, { scale, width, height })) };
}

function show(result) {
  times.push(result.ms);
  const el = $("result"), canvas = $("view");
  const items = twin.show(result, el, canvas);
  $("top").replaceChildren(...items.map((p) => {
    const li = document.createElement("li");
    li.textContent = `${p.label}: ${(p.score * 100).toFixed(1)}%` + (p.box ? ` ${t("at")} ${p.box.map((v) => Math.round(v)).join(", ")}` : "");
    return li;
  }));
  const sorted = [...times].sort((a, b) => a - b);
  const p50 = sorted[Math.floor((sorted.length - 1) / 2)];
  $("latency").textContent = t("{ms} ms (median {median} ms over {runs})",
                               { ms: result.ms.toFixed(1), median: p50.toFixed(1), runs: times.length });
  // sent once after 20 runs, then every 500 (a camera loop must not flood the report)
  if ((reported === 0 && times.length >= 20) || (reported > 0 && times.length - reported >= 500)) report();
}

export async function classifyBlob(blob) {
  lastBlob = blob;
  // EXIF orientation applied (the default), as the server does: a portrait photo is classified upright
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const rgba = pixelsOf(bitmap, bitmap.width, bitmap.height);
  const result = await classifyPixels(rgba, bitmap.width, bitmap.height);
  show(result);
  if ($("compare").checked) await compare();
  return result;
}

async function compare() {
  if (!lastBlob) return;
  const form = new FormData();
  form.append("image", lastBlob, "photo");
  const t0 = performance.now();
  const res = await fetch(`${base}/predict`, { method: "POST", body: form });
  const body = await res.json();
  const rtt = performance.now() - t0;
  const el = $("server");
  if (!res.ok) { el.textContent = body.error ? body.error.message : t("server error {status}", { status: res.status }); return; }
  const first = body.predictions[0];
  el.dataset.label = first && first.label !== undefined ? first.label : "";
  el.dataset.count = String(body.predictions.length);
  const what = (await task(body.task)).serverSummary(body);
  el.textContent = t("server ({target} {precision}): {what}, {inference} ms inference, {rtt} ms round trip",
                     { target: body.target, precision: body.precision, what,
                       inference: body.timing_ms.inference_ms.toFixed(1), rtt: rtt.toFixed(0) });
}

export async function report() {
  if (!times.length) return null;
  const sorted = [...times].sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))];
  const body = { latency_ms: { p50: q(0.5), p90: q(0.9), p99: q(0.99), mean: sorted.reduce((a, b) => a + b, 0) / sorted.length },
                 runs: sorted.length, backend, user_agent: navigator.userAgent,
                 threads: ort.env.wasm.numThreads, hardware_concurrency: navigator.hardwareConcurrency || null };
  reported = times.length;
  const res = await fetch(`${base}/measurement`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  $("reported").textContent = res.ok ? t("latency sent to the benchmark report ({runs} runs)", { runs: sorted.length })
    : t("could not send latency");
  return res.ok;
}

async function camera() {
  if (streaming) { streaming = false; return; }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status(t("No camera here: the camera needs HTTPS (serve --https). Use 'Pick a photo'."), "warn"); return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  const video = $("video"); video.srcObject = stream; await video.play();
  streaming = true; $("camera").textContent = t("Stop camera");
  let frames = 0, t0 = performance.now();
  while (streaming) {
    const rgba = pixelsOf(video, video.videoWidth, video.videoHeight);
    show(await classifyPixels(rgba, video.videoWidth, video.videoHeight));
    frames++;
    const dt = performance.now() - t0;
    if (dt > 1000) { $("fps").textContent = t("{fps} FPS", { fps: (frames * 1000 / dt).toFixed(1) }); frames = 0; t0 = performance.now(); }
    await new Promise((r) => requestAnimationFrame(r));
  }
  stream.getTracks().forEach((t) => t.stop());
  $("camera").textContent = t("Start camera");
}

$("file").addEventListener("change", (e) => { if (e.target.files[0]) classifyBlob(e.target.files[0]).catch((err) => status(err.message, "warn")); });
$("camera").addEventListener("click", () => camera().catch((err) => status(t("camera: {error}", { error: err.message }), "warn")));
$("compare").addEventListener("change", () => compare().catch((err) => status(err.message, "warn")));
$("send").addEventListener("click", () => report());

translatePage();
window.edgefactory = { ready: init().catch((err) => { status(t("Could not load the model: {error}", { error: err.message }), "warn"); throw err; }),
                       classifyBlob, classifyPixels, report, preprocess, preprocessLetterbox, task,
                       get meta() { return meta; } };
