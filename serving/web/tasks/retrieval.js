// Image retrieval on the phone page: the embedder's output is an L2-normalised vector (the twin of the task's
// NumPy post-processing, factory/tasks/retrieval). With a gallery index built by this model version the page
// finds the photo's nearest gallery items: a small gallery's vectors are downloaded once (float16) and searched
// here; a large one is searched on the server with the vector (the photo never leaves the phone). The
// neighbours' thumbnails are shown under the picture.
import { caption } from "../draw.js";
import { t } from "../i18n.js";

const K = 5;
let galleries = [], chosen = null;  // chosen: {index, version, items, vectors (Float32Array), dim} or {index, url}

export function unit(raw) {
  let norm = 0;
  for (const v of raw) norm += v * v;
  norm = Math.sqrt(norm) || 1;
  return Array.from(raw, (v) => v / norm);
}

// IEEE 754 half -> float (no Float16Array needed)
export function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

export function decodeVectors(buffer, dtype) {
  if (dtype === "int8") return Float32Array.from(new Int8Array(buffer), (v) => v / 127);
  const half = new Uint16Array(buffer);
  const out = new Float32Array(half.length);
  for (let i = 0; i < half.length; i++) out[i] = halfToFloat(half[i]);
  return out;
}

// exact inner-product search over row-major vectors: the k best {id, label, score, thumbnail_url}
export function searchVectors(query, vectors, items, dim, k = K) {
  const scores = new Float32Array(items.length);
  for (let r = 0; r < items.length; r++) {
    let s = 0;
    const off = r * dim;
    for (let c = 0; c < dim; c++) s += query[c] * vectors[off + c];
    scores[r] = s;
  }
  const order = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a]).slice(0, Math.min(k, items.length));
  return order.map((r) => ({ ...items[r], score: scores[r] }));
}

async function json(url, init) {
  const res = await fetch(url, init);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? `${body.error.message} ${body.error.fix || ""}` : `server error ${res.status}`);
  return body;
}

// the chosen gallery, its vectors downloaded when the phone searches it
export async function choose(name, dtype = "float16") {
  const g = galleries.find((x) => x.index === name);
  if (!g) throw new Error(`no gallery ${name}`);
  if (g.search_on !== "phone") { chosen = { ...g }; return chosen; }
  const info = await json(g.url);
  const res = await fetch(`${g.url}/vectors?version=${info.version}&dtype=${dtype}`);
  if (!res.ok) throw new Error(`cannot download the gallery's vectors (${res.status})`);
  chosen = { ...info, vectors: decodeVectors(await res.arrayBuffer(), dtype), bytes: Number(res.headers.get("content-length")) || null };
  return chosen;
}

function picker(status) {
  const select = document.createElement("select");
  select.id = "gallery";
  for (const g of galleries) select.append(new Option(t("{index} ({items} items)", { index: g.index, items: g.items }), g.index));
  select.addEventListener("change", () => choose(select.value).then(() => describe()).catch((e) => status(e.message, "warn")));
  const label = document.createElement("label");
  label.append(`${t("gallery")} `, select);
  document.querySelector(".controls").append(label);
}

const size = (bytes) => (bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil((bytes || 0) / 1e3)} kB`);

function describe(searchMs) {
  const where = chosen.vectors ? t("searched on this phone ({items} vectors, {size})", { items: chosen.items, size: size(chosen.bytes) })
    : t("searched on the server ({items} items, {kind})", { items: chosen.items, kind: chosen.kind });
  const el = document.getElementById("gallery-info");
  el.textContent = t("Gallery {index}:v{version}, {where}", { index: chosen.index, version: chosen.version, where }) +
    (searchMs === undefined ? "." : t("; last search {ms} ms.", { ms: searchMs.toFixed(1) }));
  el.dataset.where = chosen.vectors ? "phone" : "server";
}

export async function init({ base, status }) {
  const info = document.createElement("p");
  info.id = "gallery-info"; info.className = "small";
  const strip = document.createElement("div");
  strip.id = "neighbours";
  strip.style.cssText = "display:flex;gap:6px;overflow-x:auto;margin:6px 0";
  document.getElementById("top").after(info, strip);
  galleries = (await json(`${base}/indexes`)).indexes;
  if (!galleries.length) {
    info.textContent = t("No gallery built with this model yet: only the embedding is shown. Build one with " +
      "`edgefactory index build MODEL --gallery FOLDER --name NAME`, then reload.");
    return;
  }
  if (galleries.length > 1) picker(status);
  await choose(galleries[0].index);
  describe();
}

// raw outputs of one picture -> the embedding and, with a gallery, its nearest items
export async function decode(raw) {
  const embedding = unit(raw);
  if (!chosen) return { embedding, neighbours: null };
  const t0 = performance.now();
  const neighbours = chosen.vectors
    ? searchVectors(embedding, chosen.vectors, chosen.items_in_order, chosen.dim)
    : (await json(`${chosen.url}/search`, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ embedding, k: K }) })).results;
  return { embedding, neighbours, where: chosen.vectors ? "phone" : "server", search_ms: performance.now() - t0 };
}

function thumbnails(neighbours) {
  const strip = document.getElementById("neighbours");
  if (!strip) return;
  strip.replaceChildren(...neighbours.map((n) => {
    const fig = document.createElement("figure");
    fig.style.cssText = "margin:0;text-align:center;font-size:.75rem;min-width:72px";
    const img = document.createElement("img");
    img.src = n.thumbnail_url; img.alt = n.label; img.width = 72; img.height = 72; img.style.objectFit = "cover";
    const cap = document.createElement("figcaption");
    cap.textContent = `${n.label} ${n.score.toFixed(2)}`;
    fig.append(img, cap);
    return fig;
  }));
}

export function show(result, el, canvas) {
  const e = result.embedding;
  el.dataset.dim = String(e.length);
  const best = result.neighbours && result.neighbours[0];
  if (best) {
    el.dataset.label = best.label;
    el.dataset.score = best.score.toFixed(6);
    el.dataset.where = result.where;
    el.textContent = t("{label} (similarity {score})", { label: best.label, score: best.score.toFixed(2) });
    thumbnails(result.neighbours);
  } else {
    el.textContent = t("embedding {dim}-d", { dim: e.length });
  }
  caption(canvas, el.textContent);
  if (best) describe(result.search_ms);
  return best ? result.neighbours.map((n) => ({ label: n.label, score: n.score })) : [{ label: el.textContent, score: 1 }];
}

export function serverSummary(body) {
  return t("embedding {dim}-d", { dim: body.predictions[0].embedding.length });
}
