"""Micro-batching of text queries: one worker thread owns the model's forward passes.

Requests from many threads (or the event loop) call :meth:`QueryBatcher.submit` and get a
:class:`concurrent.futures.Future`. The worker takes the first waiting query, then every query
that arrived meanwhile (up to ``max_batch``), embeds the distinct texts in one ``encode_texts``
call under the model lock, ranks them all with one matrix product and hands each request its own
slice. So the model is never entered by two threads at once, and a burst of concurrent queries
costs about one forward pass instead of one each.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

#: ``rank(embeddings, k) -> (scores, positions)``, each ``(n_queries, k)``, best first.
RankFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
#: ``encode(texts) -> (n, dim)`` unit-norm embeddings.
EncodeFn = Callable[[list[str]], np.ndarray]


@dataclass
class _Job:
    texts: list[str]
    k: int
    future: Future = field(default_factory=Future)


class QueryBatcher:
    """Serialise and batch text queries against one model and one corpus.

    Parameters
    ----------
    encode
        Texts -> unit-norm embeddings (the model's ``encode_texts``).
    rank
        Query embeddings and ``k`` -> ``(scores, positions)`` over the corpus.
    lock
        Held around every call of ``encode``; share it with other users of the model.
    max_batch
        Most texts embedded in one forward pass.
    """

    def __init__(
        self, encode: EncodeFn, rank: RankFn, lock: threading.Lock, max_batch: int = 64
    ) -> None:
        self._encode = encode
        self._rank = rank
        self._lock = lock
        self._max_batch = max(1, int(max_batch))
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="clasp-query-batcher", daemon=True)
        self._stopped = False
        self.batches = 0  #: forward passes run so far
        self._thread.start()

    def submit(self, texts: Sequence[str], k: int) -> Future:
        """Queue ``texts``; the future gives ``(scores, positions)``, one row per text."""
        if self._stopped:
            raise RuntimeError("the query batcher is stopped")
        job = _Job(list(texts), int(k))
        self._queue.put(job)
        return job.future

    def search(self, texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Blocking :meth:`submit`."""
        return self.submit(texts, k).result()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the queued jobs."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
            self._thread.join(timeout)

    # -------------------------------------------------------------- worker
    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs, n = [first], len(first.texts)
        while n < self._max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # stop after this batch
                self._queue.put(None)
                break
            jobs.append(job)
            n += len(job.texts)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not jobs:  # every caller of this batch has gone
                continue
            try:
                self._answer(jobs)
            except BaseException as exc:  # noqa: BLE001 - the waiting requests get the error
                if len(jobs) == 1:
                    jobs[0].future.set_exception(exc)
                    continue
                for job in jobs:  # one bad query must not fail the others of its batch
                    try:
                        self._answer([job])
                    except BaseException as one:  # noqa: BLE001
                        job.future.set_exception(one)

    def _answer(self, jobs: list[_Job]) -> None:
        distinct = list(dict.fromkeys(t for job in jobs for t in job.texts))
        with self._lock:
            emb = self._encode(distinct)
        self.batches += 1
        row = {t: i for i, t in enumerate(distinct)}
        scores, pos = self._rank(emb, max(job.k for job in jobs))
        for job in jobs:
            rows = [row[t] for t in job.texts]
            job.future.set_result((scores[rows, : job.k], pos[rows, : job.k]))
