"""Gallery indexes from the command line and the server: the embedder of a model version on a target
(targets' runner, so an INT8 artifact embeds its own gallery) and the `index` / `search` commands over
retrieval.gallery."""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import anyio
import numpy as np
from fastapi import Request
from fastapi.responses import FileResponse
from PIL import Image

from factory import executors
from factory.api import session
from factory.datasets.images import is_image, load_rgb
from factory.datasets.source import open_source
from factory.datasets.splits import DatasetSplits
from factory.errors import ConfigError, NotFoundError
from factory.executors import add_executor_option
from factory.progress import StageBars
from factory.refs import dataset_row_for
from factory.tasks import task_of
from factory.text import table
from retrieval import gallery
from serving import access
from serving.http import InputFormatError
from serving.inference import int_option, request_images
from targets.predictor import Predictor, decode_image, load_predictor


class PredictorEmbedder:
    """A model version's runner as a gallery `Embedder`: images -> unit vectors."""

    def __init__(self, predictor: Predictor):
        if "embedding" not in task_of(predictor.meta).prediction_keys:
            raise ConfigError(f"{predictor.model}:v{predictor.version} is a {predictor.task} model; a gallery needs "
                              "an embedder.", fix="Train one with `edgefactory train --task retrieval` (a retrieval dataset).")
        self.predictor = predictor
        self.model = f"{predictor.model}:v{predictor.version}"
        self.target, self.precision = predictor.target, predictor.precision

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        return np.asarray([p[0]["embedding"] for p in self.predictor.predict(images)], dtype=np.float32)


def embedder(ws, catalog, model: str, target: str | None = None, precision: str | None = None) -> PredictorEmbedder:
    return PredictorEmbedder(load_predictor(ws, catalog, model, target or "pytorch", precision or "fp32"))


@contextlib.contextmanager
def _items(ws, catalog, source: str) -> Iterator[list[gallery.Item]]:
    """A gallery folder, .zip (unpacked for the block) or image file; else a dataset NAME[:vN] (every labelled image
    of it)."""
    if Path(source).is_file() and not is_image(Path(source)):  # an archive
        with open_source(source) as root:
            yield gallery.gallery_items(root)
        return
    if Path(source).exists():
        yield gallery.gallery_items(Path(source))
        return
    try:
        row = dataset_row_for(catalog, source)
    except NotFoundError:
        raise NotFoundError(f"{source} is neither a folder, a .zip, an image nor a dataset.",
                            fix="Give a folder (or .zip) with one folder of photos per identity, or a dataset name.") from None
    data = DatasetSplits.open(ws, row)
    yield [gallery.Item(data.root / m["file"], m["label"], m.get("source") or m["file"])
           for m in data.manifest if m.get("label") is not None]


def _bar(quiet: bool) -> Callable[[str, int, int], None] | None:
    return None if quiet else StageBars()


def build(model: str, source: str, name: str, *, target: str | None = None, precision: str | None = None,
          kind: str = "auto", home=None, progress=None) -> dict:
    with session(home) as (ws, catalog):
        embed = embedder(ws, catalog, model, target, precision)
        with _items(ws, catalog, source) as items:
            row = gallery.build_index(ws, catalog, name, embed, items, kind=kind, progress=progress)
    return summary(row)


def add(ref: str, source: str, *, label: str | None = None, home=None, progress=None) -> dict:
    """Add the images of `source` to index `ref` (every one labelled `label` when given)."""
    with session(home) as (ws, catalog):
        row = gallery.resolve_index(catalog, ref)
        embed = embedder(ws, catalog, row["model"], row["target"], row["precision"])
        with _items(ws, catalog, source) as items:
            if label is not None:
                items = [gallery.Item(it.path, label, it.source) for it in items]
            out = gallery.add_items(ws, catalog, ref, embed, items, progress)
    return summary(out)


def remove(ref: str, *, labels: list[str] | None = None, ids: list[int] | None = None, home=None) -> dict:
    if not labels and not ids:
        raise ConfigError("Nothing to remove was named.", fix="Pass --label LABEL or --ids ID [ID ...].")
    with session(home) as (ws, catalog):
        out = gallery.remove_items(ws, catalog, ref, labels=labels, ids=ids)
    return {**summary(out), "removed": out["removed"]}


def search(ref: str, images: list[Image.Image], k: int = 5, *, home=None) -> list[list[dict]]:
    with session(home) as (ws, catalog):
        row = gallery.resolve_index(catalog, ref)
        embed = embedder(ws, catalog, row["model"], row["target"], row["precision"])
        loaded = gallery.load_gallery(ws, row)
    return loaded.search(embed(images), k)


def summary(row: dict) -> dict:
    return {"index": row["name"], "version": row["version"], "model": row["model"], "target": row["target"],
            "precision": row["precision"], "items": row["items"], "kind": row["kind"], "params": row["params"],
            "recall_at_10_vs_exact": row["recall_at_10_vs_exact"], "build_s": row["build_s"], "bytes": row["bytes"],
            "why": row.get("why"), **({"rebuilt": row["rebuilt"]} if "rebuilt" in row else {})}


# -- command line --------------------------------------------------------------------------------
def _print(out: dict) -> None:
    params = ", ".join(f"{k} {v}" for k, v in (out["params"] or {}).items()) or "exact"
    print(f"index {out['index']}:v{out['version']}: {out['items']} items, {out['kind']} ({params}), Recall@10 vs "
          f"exact {out['recall_at_10_vs_exact']:.3f}, {out['bytes'] / 1e6:.2f} MB, {out['build_s']:.2f} s; embedder "
          f"{out['model']} ({out['target']} {out['precision']})")


def cmd_build(a: argparse.Namespace) -> dict:
    source = str(Path(a.gallery).resolve()) if Path(a.gallery).exists() else a.gallery  # a worker's folder differs
    out = executors.call("index", build, executor_name=a.executor, model=a.model, source=source, name=a.name,
                         target=a.target, precision=a.precision, kind=a.kind, home=a.home, progress=_bar(a.quiet or a.json))
    if not a.json:
        _print(out)
        print(f"  kind: {out['why']}")
    return out


def cmd_add(a: argparse.Namespace) -> dict:
    out = add(a.index, a.path, label=a.label, home=a.home, progress=_bar(a.quiet or a.json))
    if not a.json:
        _print(out)
    return out


def cmd_remove(a: argparse.Namespace) -> dict:
    out = remove(a.index, labels=a.label, ids=a.ids, home=a.home)
    if not a.json:
        print(f"removed {out['removed']} items ({'rebuilt' if out['rebuilt'] else 'in place'})")
        _print(out)
    return out


def cmd_list(a: argparse.Namespace) -> dict:
    with session(a.home) as (_, catalog):
        rows = [summary(r) for r in gallery.index_rows(catalog)]
    if not a.json:
        print("\n".join(table([{**r, "ref": f"{r['index']}:v{r['version']}"} for r in rows],
                              ["ref", "items", "kind", "model", "target", "precision", "recall_at_10_vs_exact"])))
    return {"indexes": rows}


def cmd_show(a: argparse.Namespace) -> dict:
    with session(a.home) as (ws, catalog):
        row = gallery.resolve_index(catalog, a.index)
        items = gallery.load_gallery(ws, row).items
    labels: dict[str, int] = {}
    for it in items:
        labels[it["label"]] = labels.get(it["label"], 0) + 1
    out = {**summary(row), "labels": labels}
    if not a.json:
        _print(out)
        print("\n".join(table([{"label": k, "items": v} for k, v in sorted(labels.items())], ["label", "items"])))
    return out


def cmd_search(a: argparse.Namespace) -> dict:
    path = Path(a.image)
    if not path.is_file():
        raise NotFoundError(f"No image {path}.", fix="Give the path of an image file.")
    results = search(a.index, [load_rgb(path)], a.k, home=a.home)[0]
    if not a.json:
        print("\n".join(table([{k: r[k] for k in ("label", "score", "id", "path")} for r in results],
                              ["label", "score", "id", "path"])))
    return {"index": a.index, "image": str(path), "results": [{k: r[k] for k in ("label", "score", "id", "path")}
                                                               for r in results]}


def register(sub, add_command) -> None:
    ix = sub.add_parser("index", help="gallery indexes of an embedder (retrieval)").add_subparsers(dest="action",
                                                                                                 required=True)
    sp = add_command(ix, "build", cmd_build, "embed a gallery with a retrieval model and index it (faiss)")
    sp.add_argument("model", help="the embedder NAME[:vN]")
    sp.add_argument("--gallery", required=True, help="a folder or .zip (one folder of photos per identity, or a "
                                                     "path<TAB>label list) or a dataset NAME[:vN]")
    sp.add_argument("--name", required=True, help="the index name")
    sp.add_argument("--target", help="embed with this exported artifact (default pytorch)")
    sp.add_argument("--precision", help="fp32, fp16 or int8 (default fp32)")
    sp.add_argument("--kind", default="auto", choices=list(gallery.faiss_index.KINDS),
                    help="auto: exact under 50k items, an HNSW graph up to 2M where it fits in memory, inverted lists "
                         "above, inverted lists on disk (ivf_disk, memory-mapped) where the floats do not fit; "
                         "ivfpq (compressed codes, lower recall) only by name")
    add_executor_option(sp)
    sp = add_command(ix, "add", cmd_add, "add images to a gallery (its next version), without retraining")
    sp.add_argument("index")
    sp.add_argument("path", help="a folder (one folder per identity) or an image file (labelled by its name)")
    sp.add_argument("--label", help="label every image added with this (photos of one new identity)")
    sp = add_command(ix, "remove", cmd_remove, "remove items by label or id (its next version)")
    sp.add_argument("index")
    sp.add_argument("--label", action="append", help="every item of this label (repeatable)")
    sp.add_argument("--ids", type=int, nargs="+")
    add_command(ix, "list", cmd_list, "every index version")
    add_command(ix, "show", cmd_show, "an index version and its labels").add_argument("index")
    sp = add_command(sub, "search", cmd_search, "the nearest gallery items to an image")
    sp.add_argument("index")
    sp.add_argument("image")
    sp.add_argument("--k", type=int, default=5)


# -- REST ------------------------------------------------------------------------------------------
class LoadedGalleries:
    """Loaded index versions by index name (a newer version replaces the loaded one), and their embedders, each
    loaded once."""

    def __init__(self, ws, catalog_cm):
        self.ws, self.catalog = ws, catalog_cm
        self._lock = threading.Lock()
        self._indexes: dict[str, gallery.Gallery] = {}
        self._embedders: dict[tuple[str, str, str], PredictorEmbedder] = {}

    def index(self, ref: str) -> gallery.Gallery:
        """The index's current version alone (a search with a vector made elsewhere, e.g. on the phone)."""
        with self.catalog() as cat:
            row = gallery.resolve_index(cat, ref)
        with self._lock:
            have = self._indexes.get(ref)
            if have is None or have.row["version"] != row["version"]:
                have = self._indexes[ref] = gallery.load_gallery(self.ws, row)
        return have

    def get(self, ref: str) -> tuple[gallery.Gallery, PredictorEmbedder]:
        """The index's current version and the embedder that made it."""
        loaded = self.index(ref)
        key = (loaded.row["model"], loaded.row["target"], loaded.row["precision"])
        with self._lock:
            if key not in self._embedders:
                with self.catalog() as cat:
                    self._embedders[key] = embedder(self.ws, cat, *key)
            return loaded, self._embedders[key]


def _public(item: dict, base: str) -> dict:
    return {"id": item["id"], "label": item["label"], "score": item.get("score"), "path": item["path"],
            "thumbnail_url": f"{base}/items/{item['id']}/thumbnail"}


def add_routes(app, authorize: Callable) -> None:
    """/v1/indexes: list, show, search (any key allowed to use the index), add and delete items (a key with the
    scope `index:NAME:write`, or every scope)."""
    galleries = app.state.galleries = LoadedGalleries(app.state.ws, app.state.catalog)

    @app.get("/v1/indexes", tags=["indexes"])
    async def indexes(request: Request) -> dict:
        key = authorize(request, None)
        with app.state.catalog() as cat:  # the indexes this key may search
            return {"indexes": [summary(r) for r in gallery.index_rows(cat) if access.allows(key, f"index:{r['name']}")]}

    @app.get("/v1/indexes/{name}", tags=["indexes"])
    async def index(name: str, request: Request) -> dict:
        authorize(request, f"index:{name}")
        with app.state.catalog() as cat:
            return summary(gallery.resolve_index(cat, name))

    @app.post("/v1/indexes/{name}/search", tags=["indexes"])
    async def search_route(name: str, request: Request) -> dict:
        """The nearest gallery items to an image: multipart `image` or JSON {"image": base64}, optional `k` (5)."""
        authorize(request, f"index:{name}")
        data, opts = await request_images(request, many=False)
        k = int_option({**opts, **request.query_params}.get("k"), "k", 5)
        if not 1 <= k <= 100:
            raise InputFormatError(f"k must be from 1 to 100, got {k}.", fix="e.g. k=5")

        def work() -> dict:
            t0 = time.perf_counter()
            loaded, embed = galleries.get(name)
            vector = embed([decode_image(data[0])])
            t1 = time.perf_counter()
            found = loaded.search(vector, k)[0]
            return {"index": name, "version": loaded.row["version"], "model": loaded.row["model"],
                    "results": [_public(r, f"/v1/indexes/{name}") for r in found],
                    "timing_ms": {"embed": (t1 - t0) * 1000, "search": (time.perf_counter() - t1) * 1000}}

        return await anyio.to_thread.run_sync(work, limiter=app.state.predict_slots)

    @app.post("/v1/indexes/{name}/items", tags=["indexes"], status_code=201)
    async def add_route(name: str, request: Request) -> dict:
        """Add photos to the gallery (its next version): multipart `images` + `label`, or JSON
        {"images": [base64, ...], "label": "..."}."""
        authorize(request, f"index:{name}:write")
        data, opts = await request_images(request, many=True)
        label = opts.get("label")
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            raise InputFormatError("Every added photo needs a `label` (1-200 characters).", fix='e.g. "label": "part 4711"')

        def work() -> dict:
            return _add_uploads(app.state.ws, app.state.catalog, galleries, name, data, label.strip(), decode_image)

        return await anyio.to_thread.run_sync(work, limiter=app.state.predict_slots)

    @app.delete("/v1/indexes/{name}/items/{item_id}", tags=["indexes"])
    async def delete_route(name: str, item_id: int, request: Request) -> dict:
        authorize(request, f"index:{name}:write")

        def work() -> dict:
            with app.state.catalog() as cat:
                out = gallery.remove_items(app.state.ws, cat, name, ids=[item_id])
            return {**summary(out), "removed": out["removed"]}

        return await anyio.to_thread.run_sync(work)

    @app.get("/v1/indexes/{name}/items/{item_id}/thumbnail", tags=["indexes"], response_class=FileResponse)
    async def thumbnail(name: str, item_id: int, request: Request) -> FileResponse:
        authorize(request, f"index:{name}")
        loaded = await anyio.to_thread.run_sync(galleries.index, name)
        if not any(it["id"] == item_id for it in loaded.items):
            raise NotFoundError(f"Index {loaded.ref} has no item {item_id}.", fix="Use an id from a search result.")
        return FileResponse(loaded.folder / "thumbs" / f"{item_id}.jpg", media_type="image/jpeg")


def is_index(app, name: str) -> bool:
    with app.state.catalog() as cat:
        return bool(gallery.index_rows(cat, name))


def pai_search(app, service: str, data: bytes, k: int = 5) -> dict:
    """The PAI-EAS `cv_common` body for an image sent to the gallery index named `service`: its k best matches
    (label and conf)."""
    loaded, embed = app.state.galleries.get(service)
    image = decode_image(data)
    found = loaded.search(embed([image]), k)[0]
    return {"success": True, "result": {"output": [{"type": "cv_common", "body": [
        {"label": r["label"], "conf": round(r["score"], 6)} for r in found]}],
        "meta": {"width": image.size[0], "height": image.size[1]}}}


def _add_uploads(ws, catalog_cm, galleries: LoadedGalleries, name: str, data: list[bytes], label: str,
                 decode: Callable) -> dict:
    """Decode the uploads (refusing non-images before anything is written), keep them as JPEG files inside the
    workspace, add them to the index's next version."""
    import hashlib
    import tempfile

    images = [decode(d) for d in data]
    uploads = ws.home / "indexes" / name / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=uploads) as tmp:
        items = []
        for raw, img in zip(data, images):
            digest = hashlib.sha256(raw).hexdigest()[:16]
            path = Path(tmp) / f"{digest}.jpg"
            img.save(path, "JPEG", quality=92)
            items.append(gallery.Item(path, label, f"upload/{digest}.jpg"))
        _, embed = galleries.get(name)
        with catalog_cm() as cat:
            out = gallery.add_items(ws, cat, name, embed, items)
    return {**summary(out), "added": len(items)}
