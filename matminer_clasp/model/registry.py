"""The per-process model registry: one loaded :class:`ClaspModel` per (model folder, device).

Everything that takes a ``model=`` argument (the featurizers, ``ZeroShotClassifier``,
``EmbeddingIndex`` / ``screen``, plots, the CLI, the Dask helpers) asks :func:`get_model`, so a
model named twice in one process is resolved and loaded once and shared. Follow a request:
``get_model(name, device)`` -> :func:`resolve_folder` (``None`` = bundled default, a folder, or a
Hub id + revision / cache_dir / local_files_only; a Hub id is resolved once per process) ->
key ``(real path of the folder, device)`` -> the loaded model if the folder's ``config.json`` and
``model.safetensors`` have not changed since (modification times), else
:func:`~matminer_clasp.model.io.load_model`.

The registry holds strong references to the :attr:`ModelRegistry.maxsize` most recently used
models (so cloned or unpickled estimators, later Dask partitions and repeated queries find
them) and weak references to all others (a model still used somewhere is never loaded a second
time). A lock makes concurrent requests for one model load it once. Worker processes forked by
matminer's or Dask's pools inherit the parent's registry, so they do not load the weights again;
spawned workers load each model once per process.

Queries only need the text half: :func:`get_text_model` returns the full model when it is loaded
already, else a text-only :class:`~matminer_clasp.model.text_model.ClaspTextModel` (same
vectors, loaded without the crystal side), kept under its own key.

``ClaspModel.from_pretrained`` is not cached: it always returns a fresh model (for training or
other changes). A model from the registry is shared: treat it as read-only.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from matminer_clasp.config import CONFIG_NAME, WEIGHTS_NAME
from matminer_clasp.hub import resolve_model_folder
from matminer_clasp.model import io as model_io

if TYPE_CHECKING:
    from matminer_clasp.model.clasp import ClaspModel
    from matminer_clasp.model.text_model import ClaspTextModel

__all__ = [
    "MODEL_REGISTRY",
    "ModelRegistry",
    "RegistryInfo",
    "get_model",
    "get_text_model",
    "resolve_folder",
]

#: ``(real path of the model folder, device, "full" or "text")``.
_Key = tuple[str, str, str]


class RegistryInfo(NamedTuple):
    """Counters of a :class:`ModelRegistry` (as ``functools.lru_cache``'s ``cache_info``)."""

    hits: int
    loads: int
    maxsize: int
    currsize: int


class ModelRegistry:
    """Models loaded by name in this process, one per (resolved folder, device).

    Parameters
    ----------
    maxsize
        How many of the most recently used models are kept alive by the registry itself.
    """

    def __init__(self, maxsize: int = 4) -> None:
        self.maxsize = maxsize
        self._recent: OrderedDict[_Key, tuple[tuple[int, ...], ClaspModel]] = OrderedDict()
        self._alive: weakref.WeakValueDictionary[tuple[Any, ...], ClaspModel] = (
            weakref.WeakValueDictionary()
        )
        self._hub_folders: dict[tuple[Any, ...], Path] = {}
        self._hits = 0
        self._loads = 0
        self._reset_locks()

    def _reset_locks(self) -> None:
        """New locks (also in a forked child, where a lock held by another thread stays held)."""
        self._lock = threading.Lock()
        self._loading: dict[_Key, threading.Lock] = {}

    # ------------------------------------------------------------------ resolution
    def resolve_folder(
        self,
        model: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> Path:
        """Return the local folder a model name means.

        As :func:`~matminer_clasp.hub.resolve_model_folder`, but a Hub id is resolved once per
        process for each ``(id, revision, cache_dir, local_files_only)``, so later calls make no
        Hub request. ``None`` and local folders are checked on every call (cheap); failures are
        not remembered.
        """
        if model is None or Path(os.fspath(model)).expanduser().is_dir():
            return resolve_model_folder(model, revision, cache_dir, local_files_only, token)
        key = (os.fspath(model), revision, None if cache_dir is None else os.fspath(cache_dir),
               local_files_only)
        with self._lock:
            folder = self._hub_folders.get(key)
        if folder is None:
            folder = resolve_model_folder(model, revision, cache_dir, local_files_only, token)
            with self._lock:
                self._hub_folders[key] = folder
        return folder

    # ------------------------------------------------------------------ models
    def get_model(
        self,
        model: str | os.PathLike[str] | ClaspModel | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> ClaspModel:
        """Return the shared :class:`ClaspModel` that ``model`` names, loading it if needed.

        Parameters
        ----------
        model
            ``None`` (bundled default), a model folder, a Hub id, or a :class:`ClaspModel`
            instance (returned as is; ``device`` is then ignored).
        device
            Device to load onto; ``None`` means the CPU.
        revision, cache_dir, local_files_only, token
            As in :func:`~matminer_clasp.hub.resolve_model_folder`.

        Returns
        -------
        ClaspModel
            In eval mode. The same object for every caller naming the same folder and device,
            until the folder's ``config.json`` or ``model.safetensors`` changes.

        Raises
        ------
        ModelLoadError
            If the name cannot be resolved or the folder cannot be loaded.
        """
        from matminer_clasp.model.clasp import ClaspModel

        if isinstance(model, ClaspModel):
            return model
        folder = self.resolve_folder(model, revision, cache_dir, local_files_only, token)
        return self._get((os.path.realpath(folder), _device_key(device), "full"), folder)

    def get_text_model(
        self,
        model: str | os.PathLike[str] | ClaspModel | ClaspTextModel | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> ClaspModel | ClaspTextModel:
        """Return a shared model that can ``encode_texts`` for ``model``, as cheaply as possible.

        The full :class:`ClaspModel` when it is already loaded (or was passed), else the
        text-only :class:`~matminer_clasp.model.text_model.ClaspTextModel` (loaded without
        torch_geometric or pymatgen). Both give the same vectors. Arguments as in
        :meth:`get_model`.
        """
        if hasattr(model, "encode_texts"):
            return model  # type: ignore[return-value]
        folder = self.resolve_folder(model, revision, cache_dir, local_files_only, token)
        real, dev = os.path.realpath(folder), _device_key(device)
        stamps = _stamps(folder)
        with self._lock:
            full = self._lookup((real, dev, "full"), stamps)
        if full is not None:
            return full
        return self._get((real, dev, "text"), folder)

    def _get(self, key: _Key, folder: Path) -> Any:
        """The model of ``key`` (loaded from ``folder`` by one thread if it is not alive)."""
        stamps = _stamps(folder)
        with self._lock:
            found = self._lookup(key, stamps)
            if found is not None:
                return found
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one thread loads; the others wait here and then find its model
            with self._lock:
                found = self._lookup(key, stamps)
            if found is not None:
                return found
            load = model_io.load_model if key[2] == "full" else model_io.load_text_model
            try:
                loaded = load(folder, device=key[1])
                with self._lock:
                    self._loads += 1
                    self._keep(key, stamps, loaded)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
        return loaded

    def _lookup(self, key: _Key, stamps: tuple[int, ...]) -> ClaspModel | None:
        """The model of ``key`` loaded from files with these ``stamps``, or None (lock held)."""
        found = self._alive.get((*key, stamps))
        if found is not None:
            self._hits += 1
            self._keep(key, stamps, found)
        return found

    def _keep(self, key: _Key, stamps: tuple[int, ...], model: ClaspModel) -> None:
        """Mark ``model`` most recently used, dropping the oldest strong references (lock held)."""
        self._alive[(*key, stamps)] = model
        self._recent[key] = (stamps, model)
        self._recent.move_to_end(key)
        while len(self._recent) > max(int(self.maxsize), 0):
            self._recent.popitem(last=False)

    # ------------------------------------------------------------------ housekeeping
    def info(self) -> RegistryInfo:
        """Hits, loads, ``maxsize`` and the number of models kept alive by the registry."""
        with self._lock:
            return RegistryInfo(self._hits, self._loads, self.maxsize, len(self._recent))

    def loaded(self) -> list[_Key]:
        """``(folder, device, kind)`` of the models the registry keeps alive, oldest first."""
        with self._lock:
            return list(self._recent)

    def clear(self) -> None:
        """Forget every model and every resolved Hub id (models in use elsewhere stay valid)."""
        with self._lock:
            self._recent.clear()
            self._alive.clear()
            self._hub_folders.clear()
            self._hits = self._loads = 0


def _device_key(device: str | torch.device | None) -> str:
    """``"cpu"``, ``"cuda:0"``, ...: one spelling per device (``"cuda"`` = the current one)."""
    if device is None:
        return "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return str(dev)


def _stamps(folder: Path) -> tuple[int, ...]:
    """Modification times (ns) of the files that define a model; 0 for a missing one."""
    out = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            out.append(os.stat(folder / name).st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


#: The registry of this process.
MODEL_REGISTRY = ModelRegistry()
os.register_at_fork(after_in_child=MODEL_REGISTRY._reset_locks)

#: :meth:`ModelRegistry.get_model` of :data:`MODEL_REGISTRY`.
get_model = MODEL_REGISTRY.get_model
#: :meth:`ModelRegistry.get_text_model` of :data:`MODEL_REGISTRY`.
get_text_model = MODEL_REGISTRY.get_text_model
#: :meth:`ModelRegistry.resolve_folder` of :data:`MODEL_REGISTRY`.
resolve_folder = MODEL_REGISTRY.resolve_folder
