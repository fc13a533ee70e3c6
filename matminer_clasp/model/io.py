"""Saving and loading :class:`ClaspModel` folders (``config.json`` + ``model.safetensors``).

These functions are the one implementation of ``ClaspModel.from_pretrained`` (:func:`load_model`),
``save_pretrained`` (:func:`save_model`) and ``push_to_hub`` (:func:`push_model`): the methods are
these functions bound to the class. :func:`load_model` always loads a fresh copy; the shared,
once-per-process copy that ``model=`` arguments use comes from
:func:`matminer_clasp.model.registry.get_model`.

A folder is self-contained: the text encoder's architecture is in ``config.json``
(``text_config``), its weights in ``model.safetensors`` and its tokenizer files beside them, so it
loads with no network. The one exception is ``text_weights="external"`` (the bundled default
model), whose frozen text encoder and tokenizer are read from an installed package instead of
being copied. Weights are never unpickled.

Why not ``huggingface_hub.PyTorchModelHubMixin`` (evaluated with huggingface_hub 2.4, by reading
its source and trying it on a toy model): its ``from_pretrained`` treats every name that is not a
folder as a Hub id, so ``from_pretrained(None)`` (our bundled default) asks the Hub for a
repository ``"None"`` (``LocalEntryNotFoundError`` offline); it fetches only ``config.json`` and
``model.safetensors`` (not ``tokenizer/``) with ``hf_hub_download``, whose errors are not
:class:`ModelLoadError`; a local folder without weights raises a bare ``FileNotFoundError``, a Hub
repository without them falls back to ``pytorch_model.bin``; it parses ``config.json`` itself and
silently drops unknown keys (``ClaspConfig.from_dict`` rejects them); it loads with
``strict=False`` and no message naming a missing key or a wrong shape, and prints to stdout; its
``save_pretrained`` writes ``config.json`` from the constructor arguments (none for
``ClaspModel()``, whose ``config`` is ``None``; never ``text_config``, ``model_type`` or
``library_version``) unless ``_save_pretrained`` wrote one, writes a generated ``README.md`` into
every folder, and has no dtype (fp16) option. Meeting our
requirements means overriding ``from_pretrained``, ``_from_pretrained`` and ``_save_pretrained``
and working around ``save_pretrained``, which leaves only ``push_to_hub`` (``create_repo`` +
``upload_folder``, the few lines of :func:`push_model`). See ``docs/design.md``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from matminer_clasp.config import WEIGHTS_NAME, ClaspConfig
from matminer_clasp.errors import ModelLoadError
from matminer_clasp.hub import resolve_model_folder, resolve_text_model
from matminer_clasp.model.weights_check import CHECKSUM_KEY, check_tensors, tensor_checksums

if TYPE_CHECKING:
    from matminer_clasp.model.clasp import ClaspModel
    from matminer_clasp.model.text_model import ClaspTextModel

TEXT_ENCODER_PREFIX = "text_tower.bert."
TOKENIZER_DIR = "tokenizer"


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    device: str | torch.device | None = None,
) -> ClaspModel:
    """Load a fresh :class:`ClaspModel` in eval mode (``ClaspModel.from_pretrained``).

    Parameters
    ----------
    name_or_path
        ``None`` for the bundled default model, a folder written by ``save_pretrained``, or a Hub
        id (``"org/name"``).
    revision, cache_dir, local_files_only, token
        As in :func:`~matminer_clasp.hub.resolve_model_folder` (``HF_HUB_OFFLINE=1`` implies
        ``local_files_only``).
    device
        Device to move the model to; ``None`` leaves it on the CPU.

    Returns
    -------
    ClaspModel
        A new model, not shared (use :func:`matminer_clasp.model.registry.get_model` for the
        shared, loaded-once copy).

    Raises
    ------
    ModelLoadError
        If the name cannot be resolved, a file is missing or corrupt, or a tensor has the wrong
        shape; the message names the file or key.
    """
    from matminer_clasp.model.clasp import ClaspModel

    folder = resolve_model_folder(name_or_path, revision, cache_dir, local_files_only, token)
    return _load_folder(ClaspModel, folder, None, device)


def load_text_model(
    name_or_path: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    device: str | torch.device | None = None,
) -> ClaspTextModel:
    """Load the text half of a model (``ClaspTextModel.from_pretrained``); see :func:`load_model`.

    Only the ``text_tower.*`` tensors of ``model.safetensors`` are read; nothing of the crystal
    side is imported.
    """
    from matminer_clasp.model.text_model import TEXT_TOWER_PREFIX, ClaspTextModel

    folder = resolve_model_folder(name_or_path, revision, cache_dir, local_files_only, token)
    return _load_folder(ClaspTextModel, folder, TEXT_TOWER_PREFIX, device)


def _load_folder(
    model_class: type, folder: Path, prefix: str | None, device: str | torch.device | None
) -> Any:
    """Build ``model_class`` from ``folder`` and load its tensors (those under ``prefix``)."""
    config = ClaspConfig.load(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"{weights} not found: the model folder has no weights")
    state, metadata = _read_weights(weights, prefix)
    tokenizer_dir = None
    if config.text_weights != "external":
        tokenizer_dir = folder / TOKENIZER_DIR
        if not tokenizer_dir.is_dir():
            raise ModelLoadError(
                f"{tokenizer_dir} not found: the model folder has no tokenizer (re-save it "
                "with save_pretrained)"
            )
    try:
        build = getattr(model_class, "from_parts", None)  # the text-only model's fast path
        model = build(config, tokenizer_dir) if build is not None else None
        if model is None:
            model = _from_transformers(model_class, config, tokenizer_dir)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"could not build the text encoder or tokenizer of {folder}: {exc}"
        ) from exc
    _load_state(model, state, weights, external_text=config.text_weights == "external",
                metadata=metadata)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def _from_transformers(model_class: type, config: ClaspConfig, tokenizer_dir: Path | None) -> Any:
    """``model_class(config, tokenizer=...)`` with transformers' encoder and tokenizer."""
    if tokenizer_dir is None:
        return model_class(config)
    from transformers import AutoTokenizer

    return model_class(config, tokenizer=AutoTokenizer.from_pretrained(str(tokenizer_dir)))


def _read_weights(
    path: Path, prefix: str | None
) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """The tensors of a safetensors file (those whose key starts with ``prefix``), metadata."""
    try:
        with safe_open(path, framework="pt") as fh:
            keys = [k for k in fh.keys() if prefix is None or k.startswith(prefix)]
            return {key: fh.get_tensor(key) for key in keys}, fh.metadata()
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{path} is not a readable safetensors file ({exc}); re-download or re-save it"
        ) from exc


def _load_state(
    model: ClaspModel | ClaspTextModel,
    state: dict[str, torch.Tensor],
    path: Path,
    external_text: bool,
    metadata: dict[str, str] | None = None,
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
    check_tensors(path, state, expected, metadata)
    model.load_state_dict(state, strict=not external_text)


def save_model(
    model: ClaspModel, folder: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> Path:
    """Write ``model`` to ``folder`` (created if needed) and return it (``save_pretrained``).

    ``config.json``, ``model.safetensors`` and, unless the text encoder is external, the
    tokenizer files in ``tokenizer/``.

    Parameters
    ----------
    model
        The model to save.
    folder
        Destination folder.
    dtype
        Store floating-point tensors in this dtype (e.g. ``torch.float16`` to halve the size);
        they are cast back to float32 on loading.

    Returns
    -------
    pathlib.Path
        ``folder``.
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
    save_file(state, str(folder / WEIGHTS_NAME),
              metadata={"format": "pt", CHECKSUM_KEY: tensor_checksums(state)})
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
    """Save ``model`` to a temporary folder and upload it to the Hub (``push_to_hub``).

    Parameters
    ----------
    model
        The model to upload.
    repo_id
        ``"org/name"``; the repository is created if needed.
    private, token
        Passed to ``huggingface_hub.HfApi.create_repo``.
    commit_message, revision
        The commit's message and branch.

    Returns
    -------
    str
        The repository's URL.
    """
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
