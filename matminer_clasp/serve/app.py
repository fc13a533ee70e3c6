"""The FastAPI application: JSON API under ``/api`` and the search page at ``/``.

Answers are built from values the service already made JSON-safe and returned as
``JSONResponse`` directly (FastAPI's generic encoder cost 1.3 ms a search answer, eight times
the ``json.dumps`` itself).

``create_app(index, model)`` builds a :class:`~.service.SearchService` once and serves it; every
bad request gets a 4xx with ``{"detail": "<one clear sentence>"}``, and an unexpected failure a
500 with no traceback (the traceback goes to the server log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from matminer_clasp.errors import InvalidTextError
from matminer_clasp.serve.cifs import CifNotAvailable
from matminer_clasp.serve.service import SearchService, ServeLimits

logger = logging.getLogger("matminer_clasp.serve")
STATIC = Path(__file__).resolve().parent / "static"


class SearchRequest(BaseModel):
    """Several queries in one request."""

    queries: list[str] = Field(..., description="query texts, e.g. ['garnet', 'spinel']")
    k: int = Field(10, description="results per query")


class ClassifyRequest(BaseModel):
    """Zero-shot labels for given ids, or for a page of the whole index."""

    labels: list[str] = Field(..., description="class names, e.g. ['garnet', 'spinel']")
    binary: bool = Field(False, description="one label: 'X' against 'not X'")
    ids: list[str] | None = Field(None, description="structures to label (default: a page)")
    offset: int = Field(0, description="first row of the page (without ids)")
    limit: int = Field(100, description="rows in the page (without ids)")


def create_app(
    index: Any, model: Any = None, limits: ServeLimits | None = None, **options: Any
) -> FastAPI:
    """The search service app over ``index``.

    Parameters
    ----------
    index
        An :class:`~matminer_clasp.index.EmbeddingIndex` (or a ready
        :class:`~matminer_clasp.serve.service.SearchService`).
    model
        Model for query texts (default: the index's model, else the bundled one).
    limits
        Request limits (:class:`~matminer_clasp.serve.service.ServeLimits`).
    **options
        Passed to :class:`~matminer_clasp.serve.service.SearchService` (``map_method``,
        ``structures``, ``amcsd_db``, ...).

    Returns
    -------
    fastapi.FastAPI
        The app; ``app.state.service`` is the loaded service.
    """
    service = index if isinstance(index, SearchService) else SearchService(
        index, model, limits, **options
    )
    lim = service.limits

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()  # the server stops: end the query worker

    app = FastAPI(
        title="matminer-clasp search",
        description="Text-to-crystal search over a CLaSP embedding index.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    _install_error_handlers(app)

    def check_query(text: str | None, name: str = "q") -> str:
        if text is None or not text.strip():
            raise HTTPException(422, f"{name} is empty: give a query text, e.g. ?q=garnet")
        if len(text) > lim.max_query_length:
            raise HTTPException(
                422, f"{name} is {len(text)} characters long; the limit is {lim.max_query_length}"
            )
        return text.strip()

    def check_k(k: int) -> int:
        if not 1 <= k <= lim.max_k:
            raise HTTPException(422, f"k must be an integer from 1 to {lim.max_k}, got {k}")
        return k

    async def run_search(queries: list[str], k: int) -> list[list[dict[str, Any]]]:
        scores, pos = await asyncio.wrap_future(service.batcher.submit(queries, k))
        return [service.hits(s, p) for s, p in zip(scores, pos)]

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """Liveness, corpus size and model."""
        return {"status": "ok", "n": len(service), "model": service.model_name,
                "model_hash": service.model_hash}

    @app.get("/api/search")
    async def search_get(
        q: str | None = Query(None, description="query text"),
        k: int = Query(10, description=f"number of results (1 to {lim.max_k})"),
    ) -> JSONResponse:
        """Top-k structures for one query text."""
        text, k = check_query(q), check_k(k)
        (results,) = await run_search([text], k)
        return JSONResponse({"query": text, "k": k, "results": results})

    @app.post("/api/search")
    async def search_post(body: SearchRequest) -> JSONResponse:
        """Top-k structures for each of several query texts (one forward pass)."""
        if not body.queries:
            raise HTTPException(422, "queries is empty: give at least one query text")
        if len(body.queries) > lim.max_queries:
            raise HTTPException(
                422, f"{len(body.queries)} queries in one request; the limit is {lim.max_queries}"
            )
        texts = [check_query(t, f"queries[{i}]") for i, t in enumerate(body.queries)]
        k = check_k(body.k)
        results = await run_search(texts, k)
        return JSONResponse(
            {"k": k, "results": [{"query": t, "results": r} for t, r in zip(texts, results)]}
        )

    @app.post("/api/classify")
    async def classify(body: ClassifyRequest) -> JSONResponse:
        """Zero-shot label and class probabilities per structure (stored embeddings)."""
        labels = [check_query(t, f"labels[{i}]") for i, t in enumerate(body.labels)]
        if body.binary and len(labels) != 1:
            raise HTTPException(422, f"binary needs exactly one label, got {len(labels)}")
        if not body.binary and not 2 <= len(labels) <= lim.max_labels:
            raise HTTPException(
                422, f"give 2 to {lim.max_labels} labels (or one with binary), got {len(labels)}"
            )
        if len(set(labels)) != len(labels):
            raise HTTPException(422, "labels must be unique")
        if body.ids is not None:
            if not 1 <= len(body.ids) <= lim.max_page:
                raise HTTPException(422, f"give 1 to {lim.max_page} ids, got {len(body.ids)}")
            unknown = [i for i in body.ids if i not in service.row_of]
            if unknown:
                raise HTTPException(404, f"ids not in the index: {unknown[:5]}")
            rows = [service.row_of[i] for i in body.ids]
            offset = 0
        else:
            if body.offset < 0:
                raise HTTPException(422, f"offset must be >= 0, got {body.offset}")
            if not 1 <= body.limit <= lim.max_page:
                raise HTTPException(
                    422, f"limit must be from 1 to {lim.max_page}, got {body.limit}"
                )
            offset = body.offset
            rows = list(range(offset, min(offset + body.limit, len(service))))
        classes, results = await run_in_threadpool(service.classify, labels, rows, body.binary)
        return JSONResponse({"labels": classes, "n": len(service), "offset": offset,
                             "count": len(results), "results": results})

    @app.get("/api/structure/{structure_id:path}", response_class=PlainTextResponse)
    async def structure(structure_id: str, download: bool = False) -> PlainTextResponse:
        """The CIF text of an indexed structure (``?download=true``: as a file)."""
        if structure_id not in service.row_of:
            raise HTTPException(404, f"no structure with id {structure_id!r} in the index")
        try:
            text = await run_in_threadpool(service.cifs.cif, structure_id)
        except CifNotAvailable as exc:
            raise HTTPException(404, str(exc)) from None
        headers = {}
        if download:
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in structure_id)
            headers["Content-Disposition"] = f'attachment; filename="{name}.cif"'
        return PlainTextResponse(text, headers=headers)

    @app.get("/api/map")
    async def embedding_map() -> JSONResponse:
        """2-D coordinates of (a sample of) the index for the page's embedding map."""
        return JSONResponse(service.map_payload())

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path")]
            parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(InvalidTextError)
    async def invalid_text(_: Request, exc: InvalidTextError) -> JSONResponse:
        # a query or label the text model cannot read (zero-width, emoji-only, ...)
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("error answering %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); "
                                       "see the server log"}, status_code=500)
