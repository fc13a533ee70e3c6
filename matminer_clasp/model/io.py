"""Saving and loading :class:`ClaspModel` folders (``config.json`` + ``model.safetensors``).

A folder is self-contained: the text encoder's architecture is in ``config.json``
(``text_config``), its weights in ``model.safetensors`` and its tokenizer files beside them, so it
loads with no network. The one exception is ``text_weights="external"`` (the bundled default
model), whose frozen text encoder and tokenizer are read from an installed package instead of
being copied. Weights are never unpickled.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from matminer_clasp.config import CONFIG_NAME, WEIGHTS_NAME, ClaspConfig
from matminer_clasp.errors import ModelLoadError
from matminer_clasp.hub import resolve_model_folder, resolve_text_model

if TYPE_CHECKING:
    from matminer_clasp.model.clasp import ClaspModel

TEXT_ENCODER_PREFIX = "text_tower.bert."
TOKENIZER_DIR = "tokenizer"

#: Models loaded by name in this process, keyed by (folder, stamps of its files, device): every
#: caller that names the same model (featurizers, ``ZeroShotClassifier``, ``EmbeddingIndex``,
#: ``screen``, plots, the CLI) shares one copy. Weak values, so a model can be freed; the
#: :data:`_KEEP_RECENT` most recently requested ones are also held in :data:`_RECENT`, so cloned
#: or unpickled estimators and repeated queries do not reload the weights. Worker processes forked
#: by matminer's or Dask's pools inherit both, so they do not load the weights again.
_LOADED: weakref.WeakValueDictionary[tuple[Any, ...], ClaspModel] = weakref.WeakValueDictionary()
_RECENT: OrderedDict[tuple[Any, ...], ClaspModel] = OrderedDict()
_KEEP_RECENT = 4
#: Hub ids already resolved to a local snapshot folder in this process (no second Hub request).
_HUB_FOLDERS: dict[tuple[Any, ...], Path] = {}


def get_model(
    model: str | os.PathLike[str] | ClaspModel | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> ClaspModel:
    """Return the :class:`ClaspModel` a ``model`` argument names, loading it once per process.

    Parameters
    ----------
    model
        ``None`` (bundled default), a model folder, a Hub id, or a :class:`ClaspModel` instance
        (returned as is; ``device`` is then ignored).
    device
        Device to load onto; ``None`` leaves the model on the CPU.
    revision, cache_dir, local_files_only
        As in :func:`~matminer_clasp.hub.resolve_model_folder`.

    Notes
    -----
    A model loaded by name is shared by every caller of this process that names the same folder
    and device (a folder whose files changed since is loaded again): treat it as read-only, and
    train a copy, not this object.
    """
    from matminer_clasp.model.clasp import ClaspModel

    if isinstance(model, ClaspModel):
        return model
    folder = _resolve_folder(model, revision, cache_dir, local_files_only)
    stamps = tuple(_mtime(folder / name) for name in (CONFIG_NAME, WEIGHTS_NAME))
    key = (os.fspath(folder), stamps, str(torch.device(device)) if device is not None else "cpu")
    loaded = _LOADED.get(key)
    if loaded is None:
        loaded = ClaspModel.from_pretrained(folder, device=device)
        _LOADED[key] = loaded
    _RECENT[key] = loaded
    _RECENT.move_to_end(key)
    while len(_RECENT) > _KEEP_RECENT:
        _RECENT.popitem(last=False)
    return loaded


def _resolve_folder(
    model: str | os.PathLike[str] | None,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
) -> Path:
    """:func:`resolve_model_folder`, remembering Hub ids (local folders are checked each time)."""
    if model is None or Path(os.fspath(model)).expanduser().is_dir():
        return resolve_model_folder(model, revision, cache_dir, local_files_only)
    key = (os.fspath(model), revision, None if cache_dir is None else os.fspath(cache_dir),
           local_files_only)
    if key not in _HUB_FOLDERS:
        _HUB_FOLDERS[key] = resolve_model_folder(model, revision, cache_dir, local_files_only)
    return _HUB_FOLDERS[key]


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    device: str | torch.device | None = None,
) -> ClaspModel:
    """Load a :class:`ClaspModel` from the bundled default, a folder or a Hub id, in eval mode.

    Raises
    ------
    ModelLoadError
        If the name cannot be resolved, a file is missing or corrupt, or a tensor has the wrong
        shape; the message names the file or key.
    """
    from matminer_clasp.model.clasp import ClaspModel

    folder = resolve_model_folder(name_or_path, revision, cache_dir, local_files_only, token)
    config = ClaspConfig.load(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"{weights} not found: the model folder has no weights")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{weights} is not a readable safetensors file ({exc}); re-download or re-save it"
        ) from exc
    try:
        if config.text_weights == "external":
            model = ClaspModel(config)
        else:
            tokenizer_dir = folder / TOKENIZER_DIR
            if not tokenizer_dir.is_dir():
                raise ModelLoadError(
                    f"{tokenizer_dir} not found: the model folder has no tokenizer (re-save it "
                    "with save_pretrained)"
                )
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
            model = ClaspModel(config, tokenizer=tokenizer)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"could not build the text encoder or tokenizer of {folder}: {exc}"
        ) from exc
    _load_state(model, state, weights, external_text=config.text_weights == "external")
    model.eval()
    if device is not None:
        model.to(device)
    return model


def _load_state(
    model: ClaspModel, state: dict[str, torch.Tensor], path: Path, external_text: bool
) -> None:
    expected = model.state_dict()
    if external_text:
        expected = {k: v for k, v in expected.items() if not k.startswith(TEXT_ENCODER_PREFIX)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"{path} does not match the architecture in config.json: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelLoadError(
                f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, but config.json implies "
                f"{tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=not external_text)


def save_model(
    model: ClaspModel, folder: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> Path:
    """Write ``model`` to ``folder`` (created if needed) and return the folder.

    Parameters
    ----------
    model
        The model to save.
    folder
        Destination folder.
    dtype
        Store floating-point tensors in this dtype (e.g. ``torch.float16`` to halve the size);
        they are cast back to float32 on loading.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    external = config.text_weights == "external"
    if not external:
        config.text_config = model.text_tower.bert.config.to_dict()
    state = {}
    for key, tensor in model.state_dict().items():
        if external and key.startswith(TEXT_ENCODER_PREFIX):
            continue
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    config.save(folder)
    if not external:
        model.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
    return folder


def push_model(
    model: ClaspModel,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload CLaSP model",
    revision: str | None = None,
) -> str:
    """Upload ``model`` to the Hub repository ``repo_id`` (created if needed); return its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tmp)
        api.upload_folder(
            repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision
        )
    return f"https://huggingface.co/{repo_id}"


def text_encoder_source(config: ClaspConfig) -> str:
    """Where an external text encoder is read from (for reports and error messages)."""
    return resolve_text_model(config.text_model)
