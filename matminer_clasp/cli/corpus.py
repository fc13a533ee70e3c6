"""What a CLI command works on: its inputs (through the one door), the model and the indexes.

``INPUT`` paths are read by :func:`matminer_clasp.structures.read_structures`; a corpus to search
is ``--index DIR``, ``--amcsd`` (embedded once and cached under ``$MATMINER_CLASP_CACHE``, default
``~/.cache/matminer_clasp``, as ``amcsd-index-<model hash>``) or an INPUT embedded on the fly.
Structures that cannot be read or embedded are skipped, summarised on stderr and listed in the
output (an index's ``skipped``, a table's ``error`` column).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from matminer_clasp.errors import IndexLoadError, InputError

#: The AMCSD index of the bundled default model, shipped with the package.
BUNDLED_AMCSD_INDEX = Path(__file__).resolve().parent.parent / "pretrained" / "amcsd-index"

#: Tables that can hold embeddings written by ``embed`` (parquet is what ``embed`` writes).
EMBEDDING_TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".jsonl", ".ndjson")


class CliInputError(InputError):
    """An input path, option or table the command cannot use (exit status 2)."""


class InputsFailedError(CliInputError):
    """Every input failed, or some did under ``--strict`` (exit status 1)."""

    exit_code = 1


def input_status(args: argparse.Namespace, failed: int, total: int) -> int:
    """The exit status of a command over ``total`` inputs of which ``failed`` were skipped.

    0 when all were used, or some were skipped without ``--strict``; 1 (with an ``error:`` line)
    when all failed, or some did under ``--strict``.
    """
    if total and failed == total:
        print(f"error: none of the {total} inputs could be used (see the reasons above)",
              file=sys.stderr)
        return 1
    if failed and getattr(args, "strict", False):
        print(f"error: {failed} of {total} inputs failed (--strict)", file=sys.stderr)
        return 1
    return 0


def check_output_folder(
    path: str | os.PathLike[str], what: str, rewritable: tuple[str, ...] = ()
) -> None:
    """Refuse to write ``what`` into a folder that holds something else (never overwrite).

    ``rewritable`` names the files of a folder this command may rewrite (an index's
    ``index.json``, ``embeddings.npy``, ``metadata.parquet``: re-running ``index --out DIR`` is
    how an index is rebuilt): a folder holding the first of them and nothing else.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CliInputError(f"{folder} exists and is not a folder; choose another place for "
                            f"the {what}")
    if rewritable and (folder / rewritable[0]).is_file():
        others = sorted(p.name for p in folder.iterdir() if p.name not in rewritable)
        if not others:
            return
        raise CliInputError(f"{folder} holds an index and other files ({', '.join(others[:3])}): "
                            f"refusing to rebuild the {what} over them (move them or choose "
                            "another folder)")
    if any(folder.iterdir()):
        raise CliInputError(f"{folder} is not empty: refusing to write the {what} over its files "
                            "(remove them or choose another folder)")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--top-k``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def read_records(
    path: str | os.PathLike[str], shard: tuple[int, int] | None = None, recursive: bool = False
) -> Any:
    """Read INPUT through the one door (:func:`matminer_clasp.structures.read_structures`).

    A table of embeddings (the output of ``embed``) is read with pandas alone, so commands on
    cached embeddings never import the crystal side.
    """
    table = read_embedding_table(path, shard)
    if table is not None:
        return table
    from matminer_clasp.structures import read_structures

    return read_structures(path, recursive=recursive, shard=shard)


def read_embedding_table(
    path: str | os.PathLike[str], shard: tuple[int, int] | None = None
) -> Any:
    """The table at ``path`` if it holds ``clasp_<i>`` embedding columns, else ``None``."""
    from matminer_clasp.readers import read_table, shard_rows

    file = Path(path).expanduser()
    if not file.is_file() or not file.name.lower().endswith(EMBEDDING_TABLE_SUFFIXES):
        return None
    try:
        frame = read_table(file)
    except Exception:  # noqa: BLE001 - not a table after all: the one door reports why
        return None
    if not any(str(c).startswith("clasp_") for c in frame.columns):
        return None
    return shard_rows(frame, shard).reset_index(drop=True)


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` -> ``(I, N)``, or an argparse error saying what is expected."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N (I counts from 0)")
    return i, n


def load_cli_model(args: argparse.Namespace) -> Any:
    """The model named by ``--model`` on ``--device``, from the per-process model cache."""
    from matminer_clasp.model.registry import get_model

    return get_model(args.model, device=args.device)


def model_hash(name: str | None) -> str:
    """A short content hash of a model folder (config + size and ends of the weights)."""
    from matminer_clasp.config import CONFIG_NAME, WEIGHTS_NAME
    from matminer_clasp.hub import resolve_model_folder
    from matminer_clasp.index import INDEX_FORMAT_VERSION

    folder = resolve_model_folder(name)
    h = hashlib.sha256(f"index-v{INDEX_FORMAT_VERSION}".encode())
    h.update((folder / CONFIG_NAME).read_bytes())
    weights = folder / WEIGHTS_NAME
    size = weights.stat().st_size
    h.update(str(size).encode())
    with open(weights, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """``$MATMINER_CLASP_CACHE`` or ``~/.cache/matminer_clasp``."""
    return Path(os.environ.get("MATMINER_CLASP_CACHE", "~/.cache/matminer_clasp")).expanduser()


def warn_skipped(
    skipped: list[tuple[Any, str]], total: int, shown: int = 5,
    where: str = "'skipped' in the index's index.json",
) -> None:
    """One summary on stderr; the full list stays in the output (``where``)."""
    if not skipped:
        return
    print(f"warning: skipped {len(skipped)} of {total} entries that cannot be embedded "
          f"(all listed under {where}), e.g.:", file=sys.stderr)
    for rid, err in skipped[:shown]:
        print(f"  {rid}: {str(err).splitlines()[0][:160]}", file=sys.stderr)


def build_index(records: Any, args: argparse.Namespace, model: Any) -> Any:
    """Embed readable records into an index; unreadable and unembeddable ones are skipped."""
    from matminer_clasp.index import EmbeddingIndex

    ok = records["structure"].notna()
    good = records[ok].reset_index(drop=True)
    meta = good.drop(columns=[c for c in ("structure", "error", "note") if c in good.columns])
    index = EmbeddingIndex.build(
        list(good["structure"]), ids=list(good["id"]), metadata=meta.drop(columns="id"),
        model=model, batch_size=args.batch_size, show_progress_bar=True,
        dtype="float16" if getattr(args, "fp16", False) else "float32", errors="skip",
    )
    index.skipped = [(r, e) for r, e in zip(records["id"][~ok], records["error"][~ok])] + (
        index.skipped
    )
    warn_skipped(index.skipped, len(records))
    args.input_failures = (len(index.skipped), len(records))
    if not len(index):
        raise InputsFailedError(f"none of the {len(records)} structures could be embedded")
    index.model = args.model  # record the name, not the loaded instance
    return index


def amcsd_records(args: argparse.Namespace) -> Any:
    """AMCSD as records (``id, structure, error, ...``); unreadable entries kept as rows."""
    import pandas as pd

    from matminer_clasp.train.data import load_amcsd_records

    frame = load_amcsd_records(
        max_items=args.amcsd_limit, db_path=args.amcsd_db, show_progress_bar=True
    )
    skipped = dict(frame.attrs.get("skipped", {}))
    frame = frame.copy()
    frame.insert(2, "error", None)
    if skipped:  # unreadable entries: kept as rows without a structure, reported as skipped
        bad = pd.DataFrame(
            {"id": list(skipped), "structure": None, "error": list(skipped.values())}
        )
        frame = pd.concat([frame, bad], ignore_index=True)
    return frame


def amcsd_index(args: argparse.Namespace, model: Any = None) -> Any:
    """The AMCSD index of ``--model``: the bundled one, the cached one, or embedded (once) now.

    The bundled default model ships its AMCSD index (:data:`BUNDLED_AMCSD_INDEX`), used when
    the model's hash matches the one it was built with and no ``--amcsd-limit`` /
    ``--amcsd-db`` / ``--rebuild`` asks for another; no CIF is parsed then.
    """
    from matminer_clasp.index import EmbeddingIndex

    name = getattr(args, "model", None)
    custom = args.amcsd_limit or args.amcsd_db or getattr(args, "rebuild", False)
    digest = model_hash(name)
    if not custom:
        bundled = bundled_amcsd_index(digest)
        if bundled is not None:
            return bundled
    limit = f"-first{args.amcsd_limit}" if args.amcsd_limit else ""
    folder = cache_dir() / f"amcsd-index-{digest}{limit}"
    rebuild = bool(getattr(args, "rebuild", False))
    if (folder / "index.json").is_file() and not rebuild:
        try:
            return EmbeddingIndex.load(folder)
        except IndexLoadError as exc:  # a cache: rebuilt, never trusted
            print(f"warning: the cached AMCSD index is damaged ({exc}); rebuilding it",
                  file=sys.stderr)
            rebuild = True
    print(f"embedding AMCSD once; the index is cached in {folder}", file=sys.stderr)
    index = build_index(amcsd_records(args), args, model or load_cli_model(args))
    index.model_hash = digest
    publish_index(index, folder, replace=rebuild)
    return EmbeddingIndex.load(folder)


def publish_index(index: Any, folder: Path, replace: bool = False) -> bool:
    """Save ``index`` into a private temporary folder and rename it to ``folder`` atomically.

    Another process that published ``folder`` first wins (unless ``replace``); ``False`` then.
    """
    from matminer_clasp.atomic import publish_folder, temp_folder_for

    tmp = temp_folder_for(folder)
    try:
        index.save(tmp)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish_folder(tmp, folder, replace=replace)


def bundled_amcsd_index(digest: str) -> Any:
    """The shipped AMCSD index if it was built by the model of hash ``digest``, else ``None``."""
    from matminer_clasp.index import EmbeddingIndex

    info = BUNDLED_AMCSD_INDEX / "index.json"
    if not info.is_file():
        return None
    try:
        index = EmbeddingIndex.load(BUNDLED_AMCSD_INDEX)
    except IndexLoadError as exc:
        raise IndexLoadError(
            f"the AMCSD index shipped with matminer-clasp is damaged ({exc}); reinstall "
            "matminer-clasp, or pass --rebuild to embed AMCSD into the cache instead"
        ) from exc
    return index if index.model_hash == digest else None


def corpus_index(args: argparse.Namespace, model: Any = None) -> Any:
    """The index a command searches: ``--index``, ``--amcsd`` or an INPUT path.

    ``model`` (loaded when ``None`` and structures must be embedded) embeds an INPUT or a
    missing AMCSD index; an existing index needs no crystal model.
    """
    import numpy as np

    from matminer_clasp.index import EmbeddingIndex

    if getattr(args, "index", None):
        return EmbeddingIndex.load(args.index, repair=getattr(args, "repair", False))
    if getattr(args, "amcsd", False):
        return amcsd_index(args, model)
    if not getattr(args, "input", None):
        raise CliInputError("give an INPUT path, --index DIR or --amcsd")
    records = read_records(args.input, recursive=args.recursive)
    cols = [c for c in records.columns if str(c).startswith("clasp_")]
    if cols:  # the output of `matminer-clasp embed`
        ok = np.isfinite(records[cols].to_numpy(float)).all(axis=1)
        meta = records.loc[ok, [c for c in records.columns if c not in cols and c != "error"]]
        return EmbeddingIndex(records.loc[ok, cols].to_numpy(), meta, model=args.model)
    return build_index(records, args, model or load_cli_model(args))
