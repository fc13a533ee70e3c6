"""Graph building in worker processes, off the model's critical path.

:meth:`ClaspModel.encode_structures <matminer_clasp.model.clasp.ClaspModel.encode_structures>`
encodes its inputs in chunks of ``batch_size``. With graph workers, the next chunks' graphs are
built in other processes while this one runs the model on the current chunk (a pipeline); when
no worker's result is ready, this process builds a waiting chunk itself, so a slow or starting
worker never idles the model. Results come back in input order and are the same graphs, notes
and errors as in-process building
(:func:`~matminer_clasp.graph_arrays.build_arrays_or_error` is
:func:`~matminer_clasp.model.encoding.build_graph`'s torch-free twin); only an error's
``__cause__`` does not cross the process boundary, and warnings raised while building in a
worker are not shown.

Workers are plain ``python -m matminer_clasp.graph_pool`` subprocesses (not ``multiprocessing``
children): they never re-import the caller's ``__main__`` (a script without an
``if __name__ == "__main__"`` guard is safe), never inherit torch's thread pools (no fork), and
import neither torch nor the model (about 150 MB each). They are started on first use, kept for
the life of the process that started them (a forked child starts its own) and stopped at exit.
A worker that dies or fails on a chunk costs nothing but time: that chunk is built here.

How many: ``MATMINER_CLASP_GRAPH_WORKERS`` (``0`` turns them off) or, by default, one fewer than
the CPUs this process may use, at most :data:`MAX_AUTO_WORKERS`, and none inside a daemonic
process (a ``multiprocessing`` pool worker, e.g. matminer's ``n_jobs``); the pipeline is used only
for inputs of more than two batches (:func:`auto_workers`).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

#: Environment variable that fixes the number of graph workers (``0``: build in-process).
WORKERS_ENV = "MATMINER_CLASP_GRAPH_WORKERS"
#: Upper bound on the automatic number of workers.
MAX_AUTO_WORKERS = 4
_HEADER = struct.Struct("<Q")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def auto_workers(n_items: int | None, batch_size: int) -> int:
    """Graph workers for an input of ``n_items`` (``None``: unknown length) in batches.

    ``MATMINER_CLASP_GRAPH_WORKERS`` wins when set. Otherwise none for inputs of at most two
    batches (starting a worker costs more than it saves) and inside daemonic processes; else one
    fewer than :func:`available_cpus`, at most :data:`MAX_AUTO_WORKERS`.
    """
    fixed = os.environ.get(WORKERS_ENV, "").strip()
    if fixed:
        if not fixed.isdigit():
            raise ValueError(f"{WORKERS_ENV}={fixed!r}: expected a whole number of graph "
                             "workers (0 builds graphs in the calling process)")
        return int(fixed)
    if n_items is not None and n_items <= 2 * batch_size:
        return 0
    if multiprocessing.current_process().daemon:
        return 0
    return min(available_cpus() - 1, MAX_AUTO_WORKERS)


# ---------------------------------------------------------------------- framing
def _send(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes | None:
    """One framed message, or ``None`` at end of stream."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


# ---------------------------------------------------------------------- the worker side
def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """Worker loop: read ``(config, max_sites, items, cwd)``, answer each item's arrays or error.

    Items are read in the caller's working directory at the time of the request (``cwd``), so a
    relative file path means what it means to the caller even after it changed directory.
    Answers ``("ok", [...])`` with one :func:`build_arrays_or_error` result per item, or
    ``("error", text)`` when the chunk as a whole could not be handled. Ends at end of input.
    """
    from matminer_clasp.config import ClaspConfig
    from matminer_clasp.graph_arrays import GraphArrayBuilder, build_arrays_or_error

    builders: dict[bytes, GraphArrayBuilder] = {}
    while (message := _receive(source)) is not None:
        try:
            config, max_sites, items, cwd = pickle.loads(message)
            if cwd is not None and cwd != os.getcwd():
                os.chdir(cwd)
            key = pickle.dumps((sorted(config.items()), max_sites))
            if key not in builders:
                builders[key] = GraphArrayBuilder(ClaspConfig.from_dict(config), max_sites)
            answer = pickle.dumps(("ok", [build_arrays_or_error(builders[key], x) for x in items]))
        except Exception as exc:  # noqa: BLE001 - the caller builds this chunk itself
            answer = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
        _send(sink, answer)


# ---------------------------------------------------------------------- the caller side
class GraphWorker:
    """One worker subprocess; at most one chunk in flight."""

    def __init__(self) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "matminer_clasp.graph_pool"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        self.busy = False
        self.claimed = False
        #: Chunks this worker has answered; 0 while it may still be importing its modules.
        self.answered = 0

    @property
    def alive(self) -> bool:
        """Whether the subprocess is still running."""
        return self.process.poll() is None

    def submit(self, payload: bytes) -> bool:
        """Send one chunk; ``False`` if the worker is gone."""
        try:
            _send(self.process.stdin, payload)
        except (BrokenPipeError, OSError, ValueError):
            return False
        self.busy = True
        return True

    def ready(self) -> bool:
        """Whether the answer to the chunk in flight can be read without waiting."""
        readable, _, _ = select.select([self.process.stdout], [], [], 0)
        return bool(readable)

    def result(self) -> list[Any] | None:
        """Wait for the chunk in flight; its built items, or ``None`` (build it elsewhere)."""
        self.busy = False
        message = _receive(self.process.stdout)
        if message is None:
            return None
        self.answered += 1
        status, value = pickle.loads(message)
        return value if status == "ok" else None

    def stop(self) -> None:
        """Close the worker's input (it exits) and reap it."""
        try:
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - last resort below
            self.process.kill()


_WORKERS: list[GraphWorker] = []
_OWNER = {"pid": -1}
_LOCK = threading.Lock()


def claim_workers(n: int) -> list[GraphWorker]:
    """Up to ``n`` live workers of this process for one caller (give them back with ``release``).

    Started on first use and kept for later calls; workers another thread holds are not shared.
    The process never holds more than ``max(available_cpus(), n)`` workers: callers on several
    threads at once get fewer (possibly none) and build the rest of their chunks themselves.
    """
    with _LOCK:
        if _OWNER["pid"] != os.getpid():  # a forked child: its parent's workers are not its own
            _WORKERS.clear()
            _OWNER["pid"] = os.getpid()
        _WORKERS[:] = [w for w in _WORKERS if w.alive]
        free = [w for w in _WORKERS if not w.claimed]
        limit = max(available_cpus(), n)
        while len(free) < n and len(_WORKERS) < limit:
            free.append(GraphWorker())
            _WORKERS.append(free[-1])
        for worker in free[:n]:
            worker.claimed = True
        return free[:n]


def release_workers(pool: list[GraphWorker]) -> None:
    """Give claimed workers back (each with no chunk in flight)."""
    with _LOCK:
        for worker in pool:
            worker.claimed = False


@atexit.register
def stop_workers() -> None:
    """Stop this process's graph workers (run at exit)."""
    if _OWNER["pid"] == os.getpid():
        for worker in _WORKERS:
            worker.stop()
    _WORKERS.clear()


class _Chunk:
    __slots__ = ("built", "items", "worker")

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.built: list[Any] | None = None
        self.worker: GraphWorker | None = None


def pipelined(
    chunks: Iterable[list[Any]],
    request: Callable[[list[Any]], bytes | None],
    build_here: Callable[[list[Any]], list[Any]],
    finish: Callable[[Any], Any],
    n_workers: int,
) -> Iterator[tuple[list[Any], list[Any]]]:
    """Yield ``(items, built)`` per chunk, in order, with chunks built ahead by workers.

    Parameters
    ----------
    chunks
        The input chunks (consumed at most ``n_workers + 2`` ahead of the one yielded).
    request
        A chunk -> the worker request bytes, or ``None`` when it cannot be sent (unpicklable
        items): such a chunk is built here.
    build_here
        Builds a chunk in this process (the reference path).
    finish
        Turns a worker's per-item result into what ``build_here`` gives (a graph or an error).
    n_workers
        Worker processes to use (``0``: every chunk is built here, one at a time).
    """
    pool = claim_workers(n_workers) if n_workers > 0 else []
    source = iter(chunks)
    pending: deque[_Chunk] = deque()
    stale: list[GraphWorker] = []  # workers whose chunk was built here meanwhile
    try:
        while True:
            while len(pending) < len(pool) + 2 and (items := next(source, None)) is not None:
                pending.append(_Chunk(items))
            if not pending:
                return
            _drain(stale, block=False)
            _assign(pending, pool, request)
            head = pending[0]
            while head.built is None:
                if head.worker is None:
                    head.built = build_here(head.items)
                elif _collect(head, finish, build_here, block=False):
                    break
                elif (spare := _unassigned(pending)) is not None:
                    spare.built = build_here(spare.items)  # the worker is behind: help
                elif head.worker.answered == 0:
                    # a worker that has not answered yet may still be starting (importing
                    # pymatgen takes seconds): build its chunk here instead of waiting
                    stale.append(head.worker)
                    head.worker = None
                else:
                    _collect(head, finish, build_here, block=True)
            for chunk in list(pending)[1:]:  # free finished workers for the next chunks
                if chunk.worker is not None and chunk.worker.ready():
                    _collect(chunk, finish, build_here, block=True)
            pending.popleft()
            yield head.items, head.built
    finally:
        for chunk in pending:  # abandoned early: drain the workers so they can be reused
            if chunk.worker is not None:
                chunk.worker.result()
        _drain(stale, block=True)
        release_workers(pool)


def _drain(stale: list[GraphWorker], block: bool) -> None:
    """Read and drop the answers of workers whose chunks were built elsewhere."""
    for worker in list(stale):
        if block or worker.ready():
            worker.result()
            stale.remove(worker)


def _assign(
    pending: deque[_Chunk], pool: list[GraphWorker], request: Callable[[list[Any]], Any]
) -> None:
    idle = [w for w in pool if not w.busy and w.alive]
    for chunk in pending:
        if not idle:
            return
        if chunk.built is None and chunk.worker is None:
            payload = request(chunk.items)
            if payload is None:
                continue
            worker = idle.pop(0)
            if worker.submit(payload):
                chunk.worker = worker


def _unassigned(pending: deque[_Chunk]) -> _Chunk | None:
    for chunk in list(pending)[1:]:
        if chunk.built is None and chunk.worker is None:
            return chunk
    return None


def _collect(
    chunk: _Chunk, finish: Callable[[Any], Any], build_here: Callable[[list[Any]], list[Any]],
    block: bool,
) -> bool:
    """Take a chunk's answer from its worker (``block=False``: only if ready)."""
    worker = chunk.worker
    if worker is None or (not block and not worker.ready()):
        return False
    chunk.worker = None
    answer = worker.result()
    if answer is None or len(answer) != len(chunk.items):
        warnings.warn("a graph worker failed; building its chunk in this process", stacklevel=3)
        chunk.built = build_here(chunk.items)
    else:
        chunk.built = [finish(x) for x in answer]
    return True


def main() -> None:
    """Worker entry point: answers on the original stdout, which is then pointed at stderr.

    Whatever a library prints while building cannot corrupt the answers.
    """
    warnings.filterwarnings("ignore")
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
