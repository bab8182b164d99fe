"""Gallery search from the phone page: a preview link (`/p/<token>`) of an embedder may search the gallery
indexes that embedder built. The page embeds the photo in the browser, then either downloads a small gallery's
vectors (float16 or int8) and searches on the phone, or sends the vector (never the photo) to the server's
index; either way it shows the neighbours' thumbnails.

A link grants read access (search, thumbnails) to the galleries of its own model version only; growing a
gallery stays behind an API key with a write scope (/v1/indexes)."""

from __future__ import annotations

import anyio
import numpy as np
from fastapi import Request, Response
from fastapi.responses import FileResponse

from factory.errors import NotFoundError
from retrieval import gallery
from serving import access
from serving.http import InputFormatError, parse_json, read_limited

PHONE_MAX_ITEMS = 5000  # up to here the page downloads the vectors (5000 x 256 float16: 2.6 MB) and searches itself
DTYPES = ("float16", "int8")
INT8_SCALE = 127.0  # unit vectors: every coordinate is within [-1, 1]


def encode_vectors(vectors: np.ndarray, dtype: str) -> bytes:
    """Row-major little-endian `dtype` bytes of unit vectors (int8: round(v * 127))."""
    if dtype == "int8":
        return np.clip(np.rint(vectors * INT8_SCALE), -127, 127).astype("<i1").tobytes()
    return vectors.astype("<f2").tobytes()


def _galleries_of(catalog, link: dict) -> list[dict]:
    """The newest version of every index embedded by the link's model version, newest index first."""
    model = f"{link['model']}:v{link['version']}"
    newest: dict[str, dict] = {}
    for row in gallery.index_rows(catalog):
        if row["model"] == model:
            newest[row["name"]] = row  # index_rows is ordered by name, version
    return sorted(newest.values(), key=lambda r: -r["created_at"])


def _url(token: str, name: str) -> str:
    return f"/p/{token}/indexes/{name}"


def _describe(token: str, row: dict) -> dict:
    return {"index": row["name"], "version": row["version"], "items": row["items"], "dim": row["dim"],
            "kind": row["kind"], "embedder": {"target": row["target"], "precision": row["precision"]},
            "search_on": "phone" if row["items"] <= PHONE_MAX_ITEMS else "server", "url": _url(token, row["name"])}


def add_routes(app) -> None:
    galleries = app.state.galleries  # serving.gallery.add_routes made it

    def loaded(token: str, name: str) -> gallery.Gallery:
        """Index `name` if the token is a valid link of the model version that embedded it."""
        with app.state.catalog() as cat:
            link = access.check_link(app.state.ws, cat, token)
            ours = any(r["name"] == name for r in _galleries_of(cat, link))
        if not ours:
            raise NotFoundError(f"{link['model']}:v{link['version']} has no gallery index {name!r}.",
                                fix=f"Build one: edgefactory index build {link['model']}:v{link['version']} "
                                    f"--gallery FOLDER --name {name}")
        return galleries.index(name)

    @app.get("/p/{token}/indexes", tags=["preview"])
    async def phone_indexes(token: str) -> dict:
        """The galleries this link's embedder built, with where the page should search each."""
        def work() -> dict:
            with app.state.catalog() as cat:
                link = access.check_link(app.state.ws, cat, token)
                return {"indexes": [_describe(token, r) for r in _galleries_of(cat, link)],
                        "phone_max_items": PHONE_MAX_ITEMS}

        return await anyio.to_thread.run_sync(work)

    @app.get("/p/{token}/indexes/{name}", tags=["preview"])
    async def phone_index(token: str, name: str) -> dict:
        """The index version and, for a gallery small enough to search on the phone, its items in vector order."""
        found = await anyio.to_thread.run_sync(loaded, token, name)
        out = _describe(token, found.row)
        if found.row["items"] <= PHONE_MAX_ITEMS:
            out["items_in_order"] = [{"id": it["id"], "label": it["label"],
                                      "thumbnail_url": f"{out['url']}/items/{it['id']}/thumbnail"} for it in found.items]
        return out

    @app.get("/p/{token}/indexes/{name}/vectors", tags=["preview"])
    async def phone_vectors(token: str, name: str, version: int, dtype: str = "float16") -> Response:
        """The gallery's unit vectors, rows in the order of `items_in_order` of the same version, as raw
        little-endian float16 (default) or int8 (value / 127)."""
        if dtype not in DTYPES:
            raise InputFormatError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.", fix="e.g. dtype=float16")
        found = await anyio.to_thread.run_sync(loaded, token, name)
        if found.row["version"] != version:
            raise NotFoundError(f"Index {name} is at version {found.row['version']}, not {version}.",
                                fix="Read the index again (GET its url) and ask for that version's vectors.",
                                code="INDEX_CHANGED")
        if found.row["items"] > PHONE_MAX_ITEMS:
            raise InputFormatError(f"Index {name} holds {found.row['items']} items: the phone searches at most "
                                   f"{PHONE_MAX_ITEMS} itself.", fix=f"POST the embedding to {_url(token, name)}/search.")
        body = encode_vectors(found.vectors, dtype)
        return Response(body, media_type="application/octet-stream",
                        headers={"X-Vectors-Shape": f"{len(found.vectors)},{found.vectors.shape[1]}",
                                 "X-Vectors-Dtype": dtype, "Cache-Control": "private, max-age=3600"})

    @app.post("/p/{token}/indexes/{name}/search", tags=["preview"])
    async def phone_search(token: str, name: str, request: Request) -> dict:
        """The nearest items to an embedding made on the phone: JSON {"embedding": [floats], "k": 5}."""
        body = parse_json(await read_limited(request, 256 * 1024), 'Send {"embedding": [...], "k": 5}.')
        vector, k = _query(body)

        def work() -> dict:
            found = loaded(token, name)
            if vector.shape[1] != found.row["dim"]:
                raise InputFormatError(f"The embedding has {vector.shape[1]} values; index {name} holds "
                                       f"{found.row['dim']}-d vectors.", fix="Embed with the model that built the index.")
            base = _url(token, name)
            return {"index": name, "version": found.row["version"],
                    "results": [{"id": r["id"], "label": r["label"], "score": r["score"],
                                 "thumbnail_url": f"{base}/items/{r['id']}/thumbnail"}
                                for r in found.search(gallery.unit(vector), k)[0]]}

        return await anyio.to_thread.run_sync(work)

    @app.get("/p/{token}/indexes/{name}/items/{item_id}/thumbnail", tags=["preview"], response_class=FileResponse)
    async def phone_thumbnail(token: str, name: str, item_id: int) -> FileResponse:
        found = await anyio.to_thread.run_sync(loaded, token, name)
        if not any(it["id"] == item_id for it in found.items):
            raise NotFoundError(f"Index {found.ref} has no item {item_id}.", fix="Use an id from a search result.")
        return FileResponse(found.folder / "thumbs" / f"{item_id}.jpg", media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=86400"})


def _query(body) -> tuple[np.ndarray, int]:
    """(1 x D float32 vector, k) from the search body; InputFormatError says what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("embedding"), list) or not body["embedding"]:
        raise InputFormatError("The search needs an `embedding`: a list of numbers.", fix='Send {"embedding": [...], "k": 5}.')
    try:
        vector = np.asarray(body["embedding"], dtype=np.float32).reshape(1, -1)
    except (TypeError, ValueError):
        raise InputFormatError("The embedding must hold numbers only.", fix="Send the model's output as it is.") from None
    if not np.isfinite(vector).all() or not np.linalg.norm(vector):
        raise InputFormatError("The embedding holds NaN, infinite values or zeros only.", fix="Send the model's output.")
    k = body.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
        raise InputFormatError(f"k must be a whole number from 1 to 100, got {k!r}.", fix="e.g. \"k\": 5")
    return vector, k
