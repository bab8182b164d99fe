"""Gallery indexes, a catalog noun versioned like models: `NAME:vK` holds the embeddings of a gallery made by one
embedder (a model version on one target and precision: an INT8 embedder gets an index of its own INT8 embeddings,
never mixed with FP32 ones), a faiss index over them, and the items (id, label, source path, thumbnail).

Each version is a folder written in full and then published (atomic); `add` and `remove` write the next version,
so a failed change leaves the gallery as it was and an earlier version can still be searched.

Embedding is the caller's: an `Embedder` turns images into unit vectors (the CLI and the server pass the model's
runner), so this module needs only faiss and the catalog.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from PIL import Image

from factory.catalog import Catalog, Schema, register_schema
from factory.datasets.images import is_image, load_rgb
from factory.errors import ConfigError, NotFoundError
from factory.refs import parse_ref
from factory.tasks.retrieval.metrics import unit
from factory.workspace import Workspace, atomic_write_json, publish_dir, staging_dir
from retrieval import faiss_index

SCHEMA = register_schema(Schema("retrieval.gallery", migrations=(
    """
    CREATE TABLE IF NOT EXISTS indexes (
        name TEXT NOT NULL, version INTEGER NOT NULL, model TEXT NOT NULL, target TEXT NOT NULL,
        precision TEXT NOT NULL, kind TEXT NOT NULL, params TEXT NOT NULL, items INTEGER NOT NULL,
        dim INTEGER NOT NULL, path TEXT NOT NULL, recall_at_10_vs_exact REAL, build_s REAL, bytes INTEGER,
        why TEXT, created_at REAL NOT NULL, PRIMARY KEY (name, version));
    """,), json_columns=frozenset({"params"})))
THUMB_SIDE = 128
EMBED_BATCH = 32
Progress = Callable[[str, int, int], None]


class Embedder(Protocol):
    model: str  # NAME:vK
    target: str
    precision: str

    def __call__(self, images: list[Image.Image]) -> np.ndarray: ...


@dataclass(frozen=True)
class Item:
    path: Path  # the image file
    label: str
    source: str  # what the table shows (relative to the gallery folder)


def gallery_items(root: Path) -> list[Item]:
    """A gallery folder: one folder per identity (the folder is the label), or a PP-ShiTu `path<TAB>label` list
    file at the top; images at the top level are labelled by their file name."""
    root = Path(root)
    if not root.exists():
        raise NotFoundError(f"The gallery {root} does not exist.", fix="Give a folder of images (one folder per identity).")
    lists = [p for p in sorted(root.glob("*.txt")) if p.is_file()] if root.is_dir() else []
    for lst in lists:
        lines = [ln for ln in lst.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        if lines and all("\t" in ln for ln in lines):
            items = []
            for ln in lines:
                rel, _, label = ln.partition("\t")
                path = root / rel.strip()
                if path.is_file() and is_image(path) and ".." not in Path(rel).parts:
                    items.append(Item(path, label.strip(), rel.strip()))
            return items
    if root.is_file():
        return [Item(root, root.stem, root.name)] if is_image(root) else []
    items = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and is_image(p)):
        rel = path.relative_to(root)
        items.append(Item(path, rel.parts[0] if len(rel.parts) > 1 else path.stem, rel.as_posix()))
    return items


def available_memory() -> int | None:
    """Bytes of memory this machine has free (MemAvailable), None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def embed_items(items: list[Item], embed: Embedder, progress: Progress | None = None) -> np.ndarray:
    out = []
    for start in range(0, len(items), EMBED_BATCH):
        batch = items[start:start + EMBED_BATCH]
        out.append(np.asarray(embed([load_rgb(i.path) for i in batch]), dtype=np.float32))
        if progress:
            progress("embed gallery", min(start + EMBED_BATCH, len(items)), len(items))
    return unit(np.concatenate(out) if out else np.zeros((0, 0), np.float32))


# -- catalog -------------------------------------------------------------------------------------
def index_rows(catalog: Catalog, name: str | None = None) -> list[dict]:
    if name is None:
        return catalog.select("SELECT * FROM indexes ORDER BY name, version")
    return catalog.select("SELECT * FROM indexes WHERE name = ? ORDER BY version", (name,))


def resolve_index(catalog: Catalog, ref: str) -> dict:
    name, version = parse_ref(ref)
    rows = index_rows(catalog, name)
    if version is not None:
        rows = [r for r in rows if r["version"] == version]
    if not rows:
        have = ", ".join(sorted({r["name"] for r in index_rows(catalog)})) or "none"
        raise NotFoundError(f"No gallery index {ref!r} (indexes: {have}).",
                            fix="Build one: edgefactory index build MODEL --gallery FOLDER --name NAME")
    return rows[-1]


# -- files ---------------------------------------------------------------------------------------
@dataclass
class Gallery:
    """One loaded index version: faiss index, vectors (for rebuilds, exact checks and phone downloads), items."""

    row: dict
    folder: Path
    index: object
    vectors: np.ndarray
    items: list[dict]  # {id, label, path, thumb}

    @property
    def ref(self) -> str:
        return f"{self.row['name']}:v{self.row['version']}"

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[dict]]:
        """Per query, the k nearest items best first: {id, label, score, path, thumb}."""
        by_id = {it["id"]: it for it in self.items}
        k = max(1, min(int(k), len(self.items)))
        hidden = self.index.ntotal - len(self.items)  # removed from a graph index, not yet rebuilt
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k + hidden)
        return [[{**by_id[i], "score": round(float(s), 6)} for s, i in zip(srow, irow) if i >= 0 and i in by_id][:k]
                for srow, irow in zip(scores.tolist(), ids.tolist())]


def load_gallery(ws: Workspace, row: dict) -> Gallery:
    import faiss

    folder = ws.home / row["path"]
    # an on-disk index finds its lists file beside it (wherever the workspace moved); the vectors are mapped, not read
    index = faiss.read_index(str(folder / "index.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
    faiss_index.set_params(index, row["params"] or {})
    items = json.loads((folder / "items.json").read_text())
    return Gallery(row, folder, index, np.load(folder / "vectors.npy", mmap_mode="r"), items)


def _thumbnail(src: Path, dest: Path) -> None:
    img = load_rgb(src)
    img.thumbnail((THUMB_SIDE, THUMB_SIDE))
    img.save(dest, "JPEG", quality=85)


def _write_version(ws: Workspace, catalog: Catalog, name: str, base: dict, vectors: np.ndarray, items: list[dict],
                   kind: str, why: str, thumbs: dict[int, Path], copy_thumbs_from: Path | None,
                   progress: Progress | None, index=None) -> dict:
    """Tune and publish the next version of `name` holding `vectors` (rows in the order of `items`) in `index`
    (changed in place by the caller), or in an index built here from the vectors when `index` is None."""
    import faiss

    ids = np.asarray([it["id"] for it in items], dtype=np.int64)
    rebuilt = index is None
    with catalog.transaction():
        version = catalog.next_version("indexes", name)
    final = ws.home / "indexes" / name / f"v{version}"
    with staging_dir(final) as tmp:
        index, params, recall, build_s = faiss_index.timed_build(kind, vectors, ids, index, folder=tmp)
        (tmp / "thumbs").mkdir()
        for i, it in enumerate(items):
            dest = tmp / "thumbs" / f"{it['id']}.jpg"
            if it["id"] in thumbs:
                _thumbnail(thumbs[it["id"]], dest)
            elif copy_thumbs_from is not None and (copy_thumbs_from / "thumbs" / f"{it['id']}.jpg").is_file():
                os.link(copy_thumbs_from / "thumbs" / f"{it['id']}.jpg", dest)
            if progress and (i % 200 == 0 or i + 1 == len(items)):
                progress("thumbnails", i + 1, len(items))
            it["thumb"] = f"thumbs/{it['id']}.jpg"
        faiss.write_index(index, str(tmp / "index.faiss"))
        np.save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float32))  # a mapped file is streamed, not read whole
        atomic_write_json(tmp / "items.json", items)
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        row = {**base, "name": name, "version": version, "kind": kind, "params": params, "items": len(items),
               "dim": int(vectors.shape[1]), "path": str(final.relative_to(ws.home)),
               "recall_at_10_vs_exact": round(recall, 4), "build_s": round(build_s, 3),
               "bytes": int((tmp / "index.faiss").stat().st_size) + faiss_index.lists_bytes(tmp), "why": why, "created_at": time.time()}
        atomic_write_json(tmp / "index.json", {**row, "files_bytes": size, "rebuilt": rebuilt})
        with catalog.transaction():
            if catalog.next_version("indexes", name) != version:  # another writer took it meanwhile
                raise ConfigError(f"Index {name} changed while this version was written.", fix="Run the command again.")
            publish_dir(tmp, final)
            catalog.insert("indexes", row)
    return {**row, "rebuilt": rebuilt}


def build_index(ws: Workspace, catalog: Catalog, name: str, embed: Embedder, items: list[Item], *, kind: str = "auto",
                memory_bytes: int | None = None, progress: Progress | None = None) -> dict:
    """Embed `items` with `embed` and publish version 1 (or the next) of index `name`."""
    from factory.datasets.publish import validate_name

    validate_name(name, "Index")
    if kind not in faiss_index.KINDS:
        raise ConfigError(f"Unknown index kind {kind!r}.", fix=f"Use one of: {', '.join(faiss_index.KINDS)}.")
    if not items:
        raise ConfigError("The gallery holds no images.", fix="Give a folder with one folder of photos per identity.")
    vectors = embed_items(items, embed, progress)
    memory_bytes = memory_bytes or available_memory()
    chosen, why = faiss_index.choose_kind(len(items), vectors.shape[1], memory_bytes) if kind == "auto" else (kind, "given")
    rows = [{"id": i, "label": it.label, "path": it.source} for i, it in enumerate(items)]
    base = {"model": embed.model, "target": embed.target, "precision": embed.precision}
    return _write_version(ws, catalog, name, base, vectors, rows, chosen, why,
                          {i: it.path for i, it in enumerate(items)}, None, progress)


def check_embedder(row: dict, embed: Embedder) -> None:
    """A gallery is searched and grown only with the embedder that made it (the same space)."""
    made = (row["model"], row["target"], row["precision"])
    if (embed.model, embed.target, embed.precision) != made:
        raise ConfigError(f"Index {row['name']}:v{row['version']} holds embeddings of {made[0]} ({made[1]} {made[2]}); "
                          f"{embed.model} ({embed.target} {embed.precision}) makes other vectors.",
                          fix="Use the index's own model, or build a new index with this one.")


def add_items(ws: Workspace, catalog: Catalog, ref: str, embed: Embedder, items: list[Item],
              progress: Progress | None = None) -> dict:
    """The next version with `items` added (new ids after the largest one); the vectors already there are kept."""
    row = resolve_index(catalog, ref)
    check_embedder(row, embed)
    if not items:
        raise ConfigError("No images to add.", fix="Give a folder or image files.")
    old = load_gallery(ws, row)
    new = embed_items(items, embed, progress)
    first = max((it["id"] for it in old.items), default=-1) + 1
    new_ids = np.arange(first, first + len(items), dtype=np.int64)
    if row["kind"] not in faiss_index.RELISTS:  # the others add in place (IVF keeps its centroids)
        old.index.add_with_ids(np.ascontiguousarray(new), new_ids)
    rows = old.items + [{"id": int(i), "label": it.label, "path": it.source} for i, it in zip(new_ids, items)]
    return _write_version(ws, catalog, row["name"], _base(row), np.concatenate([old.vectors, new]), rows, row["kind"],
                          row["why"], {int(i): it.path for i, it in zip(new_ids, items)}, old.folder, progress,
                          index=old.index)


def remove_items(ws: Workspace, catalog: Catalog, ref: str, *, labels: list[str] | None = None,
                 ids: list[int] | None = None) -> dict:
    """The next version without the items of `labels` or `ids`; NotFoundError when none matches."""
    row = resolve_index(catalog, ref)
    old = load_gallery(ws, row)
    drop = {it["id"] for it in old.items if (labels and it["label"] in labels) or (ids and it["id"] in ids)}
    if not drop:
        raise NotFoundError(f"No item of {row['name']}:v{row['version']} matches "
                            f"{'labels ' + ', '.join(labels) if labels else 'ids ' + ', '.join(map(str, ids or []))}.",
                            fix=f"`edgefactory index show {row['name']}` lists its labels.")
    keep = [i for i, it in enumerate(old.items) if it["id"] not in drop]
    if not keep:
        raise ConfigError("That would remove every item of the gallery.", fix="Build a new index instead.")
    index = old.index
    if row["kind"] in faiss_index.REBUILDS_ON_REMOVE:
        if index.ntotal - len(keep) > faiss_index.TOMBSTONES * len(keep):
            index = None  # HNSW cannot remove (faiss#3339): hidden items past the share rebuild it from the vectors
    elif row["kind"] not in faiss_index.RELISTS:  # on-disk lists: the next version's are written from the vectors kept
        index.remove_ids(np.asarray(sorted(drop), dtype=np.int64))
    out = _write_version(ws, catalog, row["name"], _base(row), old.vectors[keep], [old.items[i] for i in keep],
                         row["kind"], row["why"], {}, old.folder, None, index=index)
    return {**out, "removed": len(drop)}


def _base(row: dict) -> dict:
    return {"model": row["model"], "target": row["target"], "precision": row["precision"]}


def delete_index(ws: Workspace, catalog: Catalog, name: str) -> int:
    rows = index_rows(catalog, name)
    if not rows:
        raise NotFoundError(f"No gallery index {name!r}.", fix="`edgefactory index list` shows them.")
    with catalog.transaction():
        catalog.execute("DELETE FROM indexes WHERE name = ?", (name,))
    shutil.rmtree(ws.home / "indexes" / name, ignore_errors=True)
    return len(rows)
