"""One search service over the bundled AMCSD index and one uvicorn server, shared by the serve
tests of all modules in a pytest process (built on first use, stopped at exit)."""

from __future__ import annotations

import atexit
import functools
import socket
import threading
import time

GARNET_MINERALS = {
    "almandine", "andradite", "calderite", "eringaite", "goldmanite", "grossular",
    "henritermierite", "hibschite", "hydrogrossular", "katoite", "kimzeyite", "knorringite",
    "majorite", "menzerite", "momoiite", "morimotoite", "pyrope", "schorlomite", "spessartine",
    "uvarovite", "yafsoanite",
}


def is_garnet(hit: dict) -> bool:
    """A result row that names a garnet (title) or a garnet-group mineral."""
    title = str(hit.get("title") or "").lower()
    mineral = str(hit.get("mineral") or "").lower()
    return "garnet" in title or mineral in GARNET_MINERALS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def amcsd_service():
    from matminer_clasp.cli.corpus import BUNDLED_AMCSD_INDEX
    from matminer_clasp.index import EmbeddingIndex
    from matminer_clasp.serve.service import SearchService

    service = SearchService(EmbeddingIndex.load(BUNDLED_AMCSD_INDEX), threads=1)
    atexit.register(service.close)
    return service


@functools.cache
def amcsd_app():
    from matminer_clasp.serve.app import create_app

    return create_app(amcsd_service())


@functools.cache
def amcsd_server() -> str:
    """Base URL of uvicorn serving :func:`amcsd_app` on a free localhost port (a thread)."""
    import uvicorn

    config = uvicorn.Config(amcsd_app(), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    atexit.register(stop)
    return f"http://127.0.0.1:{config.port}"
