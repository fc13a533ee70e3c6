"""The search service (`matminer-clasp serve`): API answers, bad input, concurrency, the command.

One service over the bundled AMCSD index (text model only) is shared by all tests here and by
the browser test (`tests/_serve_support.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from matminer_clasp.index import EmbeddingIndex  # noqa: E402
from matminer_clasp.serve.app import create_app  # noqa: E402
from matminer_clasp.serve.batcher import QueryBatcher  # noqa: E402
from matminer_clasp.serve.service import SearchService, ServeLimits, json_safe  # noqa: E402
from tests._serve_support import amcsd_app, amcsd_server, amcsd_service, free_port, is_garnet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(amcsd_app())


def strict_json(text: str):
    """Parse JSON, refusing NaN / Infinity (what browsers' JSON.parse refuses)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------- answers
def test_health_openapi_and_page(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["n"] == 9274
    assert health["model"] == "bundled" and len(health["model_hash"]) == 16
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/health", "/api/search", "/api/classify", "/api/map"} <= set(paths)
    assert "post" in paths["/api/search"] and "get" in paths["/api/search"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="search-form"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_garnet_query_returns_garnets_as_the_library_ranks_them(client):
    resp = client.get("/api/search", params={"q": "garnet", "k": 10})
    assert resp.status_code == 200
    body = strict_json(resp.text)
    hits = body["results"]
    assert body["query"] == "garnet" and [h["rank"] for h in hits] == list(range(1, 11))
    assert all(is_garnet(h) for h in hits), [(h["mineral"], h["title"]) for h in hits]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    expected = amcsd_service().index.search("garnet", top_k=10)
    assert [h["id"] for h in hits] == list(expected["id"])
    np.testing.assert_allclose(scores, expected["score"], atol=1e-5)
    first = hits[0]
    assert {"formula", "mineral", "title", "x", "y", "row"} <= set(first)
    assert 0 <= first["x"] <= 1 and 0 <= first["y"] <= 1
    assert amcsd_service().ids[first["row"]] == first["id"]


def test_post_search_answers_each_query_like_get(client):
    resp = client.post("/api/search", json={"queries": ["spinel", "garnet"], "k": 5})
    assert resp.status_code == 200
    out = resp.json()["results"]
    assert [r["query"] for r in out] == ["spinel", "garnet"]
    single = client.get("/api/search", params={"q": "garnet", "k": 5}).json()["results"]
    assert [h["id"] for h in out[1]["results"]] == [h["id"] for h in single]


def test_classify_ids_and_pages_match_the_zero_shot_classifier(client):
    from matminer_clasp.zeroshot import ZeroShotClassifier

    service = amcsd_service()
    labels = ["garnet", "spinel", "olivine"]
    ids = ["amcsd-1253", "amcsd-246", "amcsd-157"]
    body = client.post("/api/classify", json={"labels": labels, "ids": ids}).json()
    assert body["labels"] == labels and [r["id"] for r in body["results"]] == ids
    clf = ZeroShotClassifier(labels, model=service.text_model).fit()
    rows = [service.row_of[i] for i in ids]
    proba = clf.predict_proba(np.asarray(service.index.embeddings[rows]))
    got = np.array([[r["probabilities"][c] for c in labels] for r in body["results"]])
    np.testing.assert_allclose(got, proba, atol=1e-5)
    assert [r["label"] for r in body["results"]] == list(clf.classes_[proba.argmax(1)])
    assert body["results"][0]["label"] == "garnet"  # andradite

    page = client.post("/api/classify", json={"labels": labels, "offset": 9270, "limit": 10})
    assert page.status_code == 200
    assert page.json()["count"] == 4 and page.json()["offset"] == 9270  # the last page is short
    binary = client.post("/api/classify", json={"labels": ["garnet"], "binary": True,
                                                "ids": ["amcsd-1253"]}).json()
    assert binary["labels"] == ["not garnet", "garnet"]
    assert sum(binary["results"][0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_structure_gives_the_amcsd_cif(client):
    pytest.importorskip("larixite")
    resp = client.get("/api/structure/amcsd-157")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    assert "Prehnite" in resp.text and "_cell_length_a" in resp.text
    dl = client.get("/api/structure/amcsd-157", params={"download": "true"})
    assert dl.headers["content-disposition"] == 'attachment; filename="amcsd-157.cif"'


# ---------------------------------------------------------------------- bad input
BAD = [
    ("get", "/api/search", None, 422, "q is empty"),
    ("get", "/api/search?q=", None, 422, "q is empty"),
    ("get", "/api/search?q=%20%20", None, 422, "q is empty"),
    ("get", "/api/search?q=garnet&k=0", None, 422, "k must be an integer from 1 to 100"),
    ("get", "/api/search?q=garnet&k=-3", None, 422, "k must be an integer from 1 to 100"),
    ("get", "/api/search?q=garnet&k=101", None, 422, "k must be an integer from 1 to 100"),
    ("get", "/api/search?q=garnet&k=abc", None, 422, "k: Input should be a valid integer"),
    ("get", "/api/search?q=garnet&k=2.5", None, 422, "k: Input should be a valid integer"),
    ("get", "/api/search?q=" + "x" * 501, None, 422, "the limit is 500"),
    ("post", "/api/search", {"queries": []}, 422, "queries is empty"),
    ("post", "/api/search", {"queries": ["garnet", ""]}, 422, "queries[1] is empty"),
    ("post", "/api/search", {"queries": ["a"] * 65}, 422, "the limit is 64"),
    ("post", "/api/search", {"queries": "garnet"}, 422, "queries: Input should be a valid list"),
    ("post", "/api/search", {"k": 3}, 422, "queries: Field required"),
    ("post", "/api/search", {"queries": ["garnet"], "k": 0}, 422, "k must be"),
    ("post", "/api/classify", {"labels": ["garnet"]}, 422, "give 2 to 32 labels"),
    ("post", "/api/classify", {"labels": ["a", "a"]}, 422, "labels must be unique"),
    ("post", "/api/classify", {"labels": ["a", "b"], "binary": True}, 422, "exactly one label"),
    ("post", "/api/classify", {"labels": ["a", "b"], "ids": ["amcsd-3", "nope"]}, 404,
     "ids not in the index: ['nope']"),
    ("post", "/api/classify", {"labels": ["a", "b"], "limit": 5000}, 422, "limit must be"),
    ("post", "/api/classify", {"labels": ["a", "b"], "offset": -1}, 422, "offset must be"),
    ("get", "/api/structure/amcsd-999999999", None, 404, "no structure with id"),
    ("get", "/api/structure/..%2F..%2Fetc%2Fpasswd", None, 404, "no structure with id"),
    ("get", "/api/structure/%2Fetc%2Fpasswd", None, 404, "no structure with id"),
    ("get", "/api/nothing-here", None, 404, "Not Found"),
    # texts the model cannot read: a 4xx from the model's own text check, never a 500
    ("get", "/api/search?q=%E2%80%8B%E2%80%8B", None, 422, "no visible character"),
    ("post", "/api/search", {"queries": ["garnet", "\u200b"]}, 422, "no visible character"),
    ("post", "/api/classify", {"labels": ["garnet", "\u200b"]}, 422, "no visible character"),
]


@pytest.mark.parametrize(("method", "url", "payload", "status", "message"), BAD,
                         ids=[f"{m} {u[:40]} {p}"[:70] for m, u, p, _, _ in BAD])
def test_bad_requests_get_a_clear_4xx(client, method, url, payload, status, message):
    resp = client.get(url) if method == "get" else client.post(url, json=payload)
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and message in detail
    assert "Traceback" not in resp.text


def test_malformed_json_body_is_a_4xx(client):
    resp = client.post("/api/search", content=b"{not json", headers={"content-type":
                                                                        "application/json"})
    assert resp.status_code == 422 and "JSON" in resp.json()["detail"]


# ---------------------------------------------------------------------- a user's index
@pytest.fixture(scope="module")
def user_client(tmp_path_factory):
    """20 AMCSD vectors as a user's index: NaN / inf metadata, stored CIFs and a CIF folder."""
    folder = tmp_path_factory.mktemp("user-cifs")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.cif").write_text("data_c\n_cell_length_a 3.0\n")
    (folder / "secret.txt").write_text("not served")
    (folder / "elsewhere.cif").write_text("data_d\n_cell_length_a 5.0\n")
    shipped = amcsd_service().index
    n = 20
    ids = ["a", "b", "sub/c", "d"] + [f"row{i}" for i in range(4, n)]
    meta = pd.DataFrame({
        "id": ids, "formula": ["Fe2 O3"] * n,
        "band_gap": [np.nan, np.inf, -np.inf] + [1.5] * (n - 3),
        "count": np.arange(n, dtype=np.int64),
        "cif": ["data_a\n_cell_length_a 4.0\n"] + [None] * (n - 1),
        "path": [None] * 3 + [str(folder / "elsewhere.cif")] + [None] * (n - 4),
    })
    index = EmbeddingIndex(np.asarray(shipped.embeddings[:n]), meta, dtype="float32",
                           _normalized=True)
    service = SearchService(index, limits=ServeLimits(max_k=20), map_method="pca",
                            structures=folder, recursive=True, threads=1)
    yield TestClient(create_app(service))
    service.close()


def test_user_index_metadata_is_json_safe(user_client):
    resp = user_client.get("/api/search", params={"q": "hematite", "k": 20})
    assert resp.status_code == 200
    hits = {h["id"]: h for h in strict_json(resp.text)["results"]}
    assert hits["a"]["band_gap"] is None and hits["b"]["band_gap"] is None  # NaN, inf
    assert hits["sub/c"]["band_gap"] is None and hits["d"]["band_gap"] == 1.5  # -inf, a number
    assert hits["row5"]["count"] == 5 and hits["sub/c"]["formula"] == "Fe2 O3"
    rows = strict_json(user_client.post("/api/classify", json={
        "labels": ["oxide", "sulfide"], "ids": ["a", "b"]}).text)["results"]
    assert [r["id"] for r in rows] == ["a", "b"]
    shown = next(iter(hits.values()))
    assert "cif" not in shown and "path" not in shown  # behind /api/structure only
    too_many = user_client.get("/api/search", params={"q": "x", "k": 21})
    assert too_many.status_code == 422 and "from 1 to 20" in too_many.json()["detail"]
    assert json_safe(np.float32("nan")) is None and json_safe(np.int64(3)) == 3
    assert json_safe(pd.NA) is None and json_safe([np.inf, 1.0]) == [None, 1.0]


def test_user_index_cifs_come_from_the_index_or_the_listed_folder(user_client):
    assert user_client.get("/api/structure/a").text.startswith("data_a")  # stored cif column
    assert user_client.get("/api/structure/sub/c").text.startswith("data_c")  # listed file
    assert user_client.get("/api/structure/sub%2Fc").text.startswith("data_c")
    assert user_client.get("/api/structure/d").text.startswith("data_d")  # its path column
    missing = user_client.get("/api/structure/b")  # indexed, but no CIF anywhere
    assert missing.status_code == 404 and "--structures" in missing.json()["detail"]
    assert user_client.get("/api/structure/secret").status_code == 404  # a file, not an id
    assert user_client.get("/api/structure/../secret.txt").status_code == 404


def test_a_corpus_over_the_ram_limit_is_searched_as_stored(monkeypatch, tmp_path):
    import matminer_clasp.serve.service as service_module

    shipped = amcsd_service().index
    n = 300
    index = EmbeddingIndex(np.asarray(shipped.embeddings[:n], dtype=np.float16),
                           shipped.metadata.iloc[:n], dtype="float16", _normalized=True)
    index.save(tmp_path / "idx")
    monkeypatch.setattr(service_module, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(service_module, "MAP_FIT_ROWS", 100)
    big = SearchService(EmbeddingIndex.load(tmp_path / "idx"), threads=1)  # memory-mapped fp16
    try:
        assert isinstance(big.index.embeddings, np.memmap) and big.index.dtype == "float16"
        got = big.search(["garnet"], 5)[0]
        want = index.search("garnet", top_k=5)
        assert [h["id"] for h in got] == list(want["id"])
        assert big.xy.shape == (n, 2) and 0 <= big.xy.min() and big.xy.max() <= 1
    finally:
        big.close()
    with pytest.raises(ValueError, match="use --map pca"):
        SearchService(index, map_method="tsne")


def test_the_page_map_is_the_plot_modules_pca_up_to_sign():
    from matminer_clasp.plot import reduce_to_2d
    from matminer_clasp.serve.service import pca_2d

    emb = np.asarray(amcsd_service().index.embeddings[:2000])
    ours, ref = pca_2d(emb), reduce_to_2d(emb, "pca")
    for axis in range(2):
        assert abs(np.corrcoef(ours[:, axis], ref[:, axis])[0, 1]) > 0.9999
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-3)  # float32 sums
    xy = amcsd_service().xy
    assert xy.shape == (9274, 2) and xy.min() == 0 and xy.max() == 1


def test_an_unexpected_failure_is_a_500_without_traceback(user_client, monkeypatch):
    service = user_client.app.state.service

    def boom(structure_id):
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setattr(service.cifs, "cif", boom)
    resp = TestClient(user_client.app, raise_server_exceptions=False).get("/api/structure/a")
    assert resp.status_code == 500
    assert resp.json() == {"detail": "internal error (RuntimeError); see the server log"}


# ---------------------------------------------------------------------- concurrency
def assert_same_ranking(got: list[dict], want: list[dict], tol: float = 1e-5) -> None:
    """Equal rankings up to float rounding; entries tied at the cut-off may trade places."""
    assert len(got) == len(want)
    np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in want], atol=tol)
    cut = want[-1]["score"] + tol
    assert [h["id"] for h in got if h["score"] > cut] == [h["id"] for h in want if
                                                          h["score"] > cut]


def test_64_concurrent_requests_get_the_single_request_answers():
    base = amcsd_server()
    queries = ["garnet", "spinel", "olivine", "perovskite", "layered silicate", "zeolite",
               "high-pressure phase", "sulfide mineral", "carbonate", "feldspar", "pyroxene",
               "amphibole", "mica", "clay mineral", "iron oxide", "superconductor"]
    jobs = [(q, 3 + i % 8) for i, q in enumerate(queries * 4)]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(base_url=base, timeout=60, limits=limits) as c:
        single = {q: c.get("/api/search", params={"q": q, "k": 10}).json()["results"]
                  for q in queries}
        batches_before = amcsd_service().batcher.batches
        barrier = threading.Barrier(len(jobs))

        def ask(job):
            barrier.wait()
            return job, c.get("/api/search", params={"q": job[0], "k": job[1]})

        with ThreadPoolExecutor(len(jobs)) as pool:
            answers = list(pool.map(ask, jobs))
    assert len(answers) == 64
    for (q, k), resp in answers:
        assert resp.status_code == 200, resp.text
        assert resp.json()["query"] == q
        # batched and single forward passes agree to float rounding; ties may swap places
        assert_same_ranking(resp.json()["results"], single[q][:k])
    assert amcsd_service().batcher.batches - batches_before < 64  # requests were batched


def test_batcher_groups_waiting_queries_into_one_forward_pass():
    gate, calls = threading.Event(), []

    def encode(texts):
        calls.append(list(texts))
        gate.wait(10)
        return np.eye(4, dtype=np.float32)[[len(t) % 4 for t in texts]]

    corpus = np.eye(4, dtype=np.float32)

    def rank(q, k):
        sims = q @ corpus.T
        pos = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, pos, 1), pos

    batcher = QueryBatcher(encode, rank, threading.Lock(), max_batch=64)
    try:
        first = batcher.submit(["a"], 1)
        while not calls:
            time.sleep(0.01)
        rest = [batcher.submit(["bb", "ccc", "bb"][i % 3:i % 3 + 1], 2) for i in range(30)]
        gate.set()
        assert first.result(10)[1].tolist() == [[1]]
        for i, fut in enumerate(rest):
            scores, pos = fut.result(10)
            assert pos[0, 0] == len(["bb", "ccc", "bb"][i % 3]) % 4 and pos.shape == (1, 2)
        assert len(calls) == 2 and sorted(calls[1]) == ["bb", "ccc"]  # distinct texts, once
    finally:
        gate.set()
        batcher.close()


def test_one_bad_query_fails_alone_and_gone_callers_are_skipped():
    gate, calls = threading.Event(), []

    def encode(texts):
        calls.append(list(texts))
        gate.wait(10)
        if "bad" in texts:
            raise ValueError("text 0: unreadable")
        return np.ones((len(texts), 2), np.float32)

    batcher = QueryBatcher(encode, lambda q, k: (q[:, :k], np.zeros((len(q), k), np.int64)),
                           threading.Lock(), max_batch=64)
    try:
        first = batcher.submit(["warm"], 1)
        while not calls:
            time.sleep(0.01)
        good, bad, gone = (batcher.submit([t], 1) for t in ("good", "bad", "gone"))
        gone.cancel()  # its caller went away while it waited
        gate.set()
        first.result(10)
        assert good.result(10)[1].shape == (1, 1)
        with pytest.raises(ValueError, match="unreadable"):
            bad.result(10)
        assert gone.cancelled() and not any("gone" in c for c in calls)
    finally:
        gate.set()
        batcher.close()


def test_batcher_hands_errors_to_every_waiting_request():
    def encode(texts):
        raise RuntimeError("model failed")

    batcher = QueryBatcher(encode, lambda q, k: (q, q), threading.Lock())
    try:
        with pytest.raises(RuntimeError, match="model failed"):
            batcher.search(["x"], 1)
        assert batcher.submit(["y"], 1).exception(10) is not None  # the worker lives on
    finally:
        batcher.close()


# ---------------------------------------------------------------------- the command
def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_serve_command_answers_and_refuses_a_busy_port(capsys):
    port = free_port()
    cmd = [sys.executable, "-m", "matminer_clasp.cli", "serve", "--amcsd", "--port", str(port),
           "--threads", "1", "--map", "none", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None and health["n"] == 9274, proc.stderr.read() if proc.poll() else ""
        hits = httpx.get(f"http://127.0.0.1:{port}/api/search",
                         params={"q": "garnet", "k": 3}).json()["results"]
        assert all(is_garnet(h) for h in hits)
        from matminer_clasp.cli import main

        assert main(cmd[3:]) == 2  # checked before the index is loaded
        assert f"error: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        proc.terminate()
        proc.wait(30)
    assert "serving 9274 structures at http://127.0.0.1:" in proc.stderr.read()
