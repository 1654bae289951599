"""The HTTP service of ``medtl serve``: FastAPI routes over a :class:`~.model.ServedModel` and a micro-batcher.

``POST /predict`` takes a multipart form with one or more image files (any field name) and answers, per file, the
class probabilities, the predicted class (binary: at the run's validation threshold) and the model's id and version.
Bad input is a 4xx JSON ``{"error": ...}``: 415 for a body that is not multipart/form-data, 413 above the body
limit, 422 for a file that is not a readable single 2D image (not an image, corrupt, multi-frame, too many pixels) or
a form without a file. The body is read into memory up to the limit and parsed there: nothing is written to disk.
"""

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

from ...data.readers import read_image
from ...data.text import printable
from ...errors import MedtlError
from ...optional import require_all
from .batcher import MicroBatcher
from .model import ServedModel
from .upload import MAX_PARTS, boundary_of, parse

log = logging.getLogger("medtl")
PAGE = Path(__file__).with_name("page.html")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def require_fastapi():
    require_all(["fastapi", "uvicorn", "python_multipart"], extra="serve", purpose="medtl serve")


def create_app(model: ServedModel, max_batch: int = 32, window_ms: float = 5.0, max_body_mb: float = 20.0):
    """The ASGI application serving ``model``."""
    require_fastapi()
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limit = int(max_body_mb * 2**20)
    batcher = MicroBatcher(model, max_batch, window_ms / 1000)
    identity = {"id": model.name, "version": model.version, "medtl_model": model.spec.get("backbone"),
                "cut": model.spec.get("cut")}

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="medtl serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, e: BadRequest):
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception):  # a bug, not bad input: logged here, never in the body
        log.exception("medtl serve: internal error on %s", request.url.path)
        return JSONResponse({"error": "internal error; the server log has the details"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text("utf-8")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": identity, "batches": batcher.batches, "images": batcher.images}

    @app.get("/metadata")
    async def metadata():
        spec = model.spec
        return {"model": identity, "task": spec.get("task"), "classes": model.classes, "threshold": model.threshold,
                "members": len(model.members),
                "input": {"channels": spec["in_chans"], "image_size": spec["image_size"],
                          "read_size": spec.get("read_size") or spec["image_size"]},
                "preprocessing": model.members[0].preprocessing, "model_card": card_summary(model.card),
                "limits": {"max_body_mb": max_body_mb, "max_files": MAX_PARTS, "max_batch": max_batch,
                           "batch_window_ms": window_ms}}

    @app.post("/predict")
    async def predict(request: Request):
        boundary = boundary_of(request.headers.get("content-type", ""))
        if not boundary:
            raise BadRequest(415, "send the image(s) as multipart/form-data (e.g. curl -F file=@image.png "
                                  f"{request.base_url}predict), got content type "
                                  f"{request.headers.get('content-type') or 'none'!r}.")
        body = await read_body(request, limit)
        try:
            parts = [p for p in parse(body, boundary) if p.filename is not None]
        except MedtlError as e:
            raise BadRequest(422, str(e)) from None
        if not parts:
            raise BadRequest(422, "the form holds no file; send the image as a file field, e.g. -F file=@image.png.")
        try:
            inputs = await asyncio.gather(*(asyncio.to_thread(prepare, model, p.data, p.filename) for p in parts))
        except MedtlError as e:
            raise BadRequest(422, str(e)) from None
        prob = await batcher.submit(tuple(np.stack([x[m] for x in inputs]) for m in range(len(model.members))))
        return {"model": identity,
                "predictions": [{"file": p.filename, **model.decide(row)} for p, row in zip(parts, prob)]}

    return app


def prepare(model: ServedModel, data: bytes, filename: str) -> tuple[np.ndarray, ...]:
    """An uploaded file decoded by medtl's image reader (as ``medtl predict`` reads files) and preprocessed for each
    member; a DataError naming the file when it is not a readable single 2D image."""
    name = printable(filename or "upload")
    return model.prepare(read_image(data, name=name, reading=model.reading).array)


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, announced or not."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the request body is {int(declared):,} bytes, above this server's limit of "
                              f"{limit:,} (--max-body-mb); send fewer or smaller images per request.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the request body passed this server's limit of {limit:,} bytes (--max-body-mb); "
                                  "send fewer or smaller images per request.")
        chunks.append(chunk)
    return b"".join(chunks)


def card_summary(card: str | None) -> dict | None:
    """The model card's title, its notice and its performance section (the whole card is in the run directory)."""
    if not card:
        return None
    lines = card.splitlines()
    title = next((line.lstrip("# ").strip() for line in lines if line.startswith("# ")), "")
    sections: dict[str, list[str]] = {}
    current = "notice"
    for line in lines:
        if line.startswith("## "):
            current = line[3:].strip()
        elif not line.startswith("# "):
            sections.setdefault(current, []).append(line)
    pick = {k: "\n".join(v).strip() for k, v in sections.items() if k == "notice" or k.lower().startswith(
        ("performance", "model", "intended", "limitations"))}
    return {"title": title, **pick}
