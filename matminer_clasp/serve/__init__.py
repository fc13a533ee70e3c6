"""``matminer-clasp serve``: a warm text-to-crystal search service with a web page.

``create_app(index, model)`` (in :mod:`.app`) loads the text half of the model and the index once
(:class:`~.service.SearchService`) and serves, under uvicorn:

* ``GET /api/health``, ``GET|POST /api/search``, ``POST /api/classify``,
  ``GET /api/structure/{id}`` (CIF text), ``GET /api/map`` (2-D coordinates);
* ``/`` - a search page (plain HTML + JS, :file:`static/`); ``/docs`` - the OpenAPI page.

Needs the ``serve`` extra: ``pip install 'matminer-clasp[serve]'`` (FastAPI and uvicorn).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SearchService", "ServeLimits", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from matminer_clasp.serve.app import create_app

        return create_app
    if name in ("SearchService", "ServeLimits"):
        from matminer_clasp.serve import service

        return getattr(service, name)
    raise AttributeError(name)
