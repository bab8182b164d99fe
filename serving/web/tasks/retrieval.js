// Image retrieval on the phone page: the embedder's output is an L2-normalised vector (the twin of the task's
// NumPy post-processing, factory/tasks/retrieval); the page shows its size and compares it with the server's.

export function unit(raw) {
  let norm = 0;
  for (const v of raw) norm += v * v;
  norm = Math.sqrt(norm) || 1;
  return Array.from(raw, (v) => v / norm);
}

// raw outputs of one picture -> what the page keeps of them
export function decode(raw) {
  return { embedding: unit(raw) };
}

export function show(result, el, canvas) {
  const e = result.embedding;
  el.dataset.dim = String(e.length);
  el.textContent = `embedding ${e.length}-d`;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "rgba(0,0,0,0.6)"; ctx.fillRect(0, 0, canvas.width, 28);
  ctx.fillStyle = "#fff"; ctx.font = "18px sans-serif"; ctx.textBaseline = "alphabetic"; ctx.fillText(el.textContent, 6, 20);
  return [{ label: el.textContent, score: 1 }];
}

export function serverSummary(body) {
  return `embedding ${body.predictions[0].embedding.length}-d`;
}
