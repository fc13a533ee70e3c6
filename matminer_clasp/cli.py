"""``matminer-clasp``: command-line access to embedding, screening, zero-shot labels and training.

Every command is thin: it parses options, reads the input (a CIF folder, or a parquet / JSON /
JSONL / CSV table with a ``structure`` column), calls the Python API and prints or writes the
result. Bad input ends with one line, ``error: ...``, and exit status 2.

The common case, ``matminer-clasp screen "garnet" --amcsd --top-k 10``, embeds the American
Mineralogist Crystal Structure Database once and caches the index under
``$MATMINER_CLASP_CACHE`` (default ``~/.cache/matminer_clasp``) as
``amcsd-index-<model hash>``, so later queries only embed the text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from matminer_clasp.errors import ClaspError

_STRUCTURE_SUFFIXES = (".cif", ".cif.gz", ".vasp", ".poscar")
_TABLE_SUFFIXES = (".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".csv")


class CliInputError(ClaspError, ValueError):
    """An input path, option or table the command cannot use."""


# ---------------------------------------------------------------------------- reading inputs
def _structure_files(folder: Path) -> list[Path]:
    def wanted(p: Path) -> bool:
        name = p.name
        return name.lower().endswith(_STRUCTURE_SUFFIXES) or name.startswith(("POSCAR", "CONTCAR"))

    files = [p for p in sorted(folder.iterdir()) if p.is_file() and wanted(p)]
    if not files:
        raise CliInputError(f"{folder} has no structure files ({', '.join(_STRUCTURE_SUFFIXES)})")
    return files


def _read_table(path: Path) -> Any:
    from matminer_clasp.readers import read_table

    try:
        return read_table(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise CliInputError(f"cannot read {path} as a table: {exc}") from exc


def _to_structure(value: Any) -> Any:
    from pymatgen.core import IStructure, Structure

    if isinstance(value, IStructure):
        return value
    if isinstance(value, dict):
        return Structure.from_dict(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return Structure.from_dict(json.loads(value))
    if isinstance(value, str) and value.strip():
        return Structure.from_str(value, fmt="cif")
    raise ValueError(f"not a structure (a pymatgen dict, JSON or CIF text): {type(value).__name__}")


def _parse(kind: str, value: Any) -> tuple[Any, str | None]:
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(value) if kind == "file" else _to_structure(value)
        return structure, None
    except Exception as exc:  # noqa: BLE001 - recorded per row, reported to the user
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def read_records(
    path: str | os.PathLike[str],
    shard: tuple[int, int] | None = None,
    structure_column: str = "structure",
    id_column: str = "id",
) -> Any:
    """Read a CIF folder or a table into a DataFrame ``id, structure, error, <other columns>``.

    Unreadable entries keep their row with ``structure=None`` and the reason in ``error``. With
    ``shard=(i, n)`` only the ``i``-th (0-based) of ``n`` contiguous parts is parsed. A table with
    ``clasp_<i>`` columns (the output of ``embed``) is returned as is, without structures.
    """
    import numpy as np
    import pandas as pd

    path = Path(path).expanduser()
    if not path.exists():
        raise CliInputError(f"{path} does not exist")
    if path.is_dir():
        files = _structure_files(path)
        frame = pd.DataFrame({"id": [_stem(f) for f in files], "_src": files})
        kind = "file"
    elif path.name.lower().endswith(_STRUCTURE_SUFFIXES):
        frame, kind = pd.DataFrame({"id": [_stem(path)], "_src": [path]}), "file"
    elif path.name.lower().endswith(_TABLE_SUFFIXES):
        frame, kind = _read_table(path), "value"
        if any(str(c).startswith("clasp_") for c in frame.columns):
            return _shard(frame, shard)
        if structure_column not in frame.columns:
            raise CliInputError(
                f"{path} has no {structure_column!r} column (columns: {list(frame.columns)[:10]})"
            )
        frame = frame.rename(columns={structure_column: "_src"})
        if id_column in frame.columns:
            frame = frame.rename(columns={id_column: "id"})
        else:
            frame.insert(0, "id", np.arange(len(frame)))
    else:
        raise CliInputError(
            f"{path}: expected a folder of CIF files, a .cif file or a table "
            f"({', '.join(_TABLE_SUFFIXES)})"
        )
    frame = _shard(frame, shard).reset_index(drop=True)
    parsed = [_parse(kind, v) for v in frame["_src"]]
    frame.insert(1, "structure", [p[0] for p in parsed])
    frame.insert(2, "error", [p[1] for p in parsed])
    return frame.drop(columns="_src")


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".cif.gz")] if name.lower().endswith(".cif.gz") else path.stem


def _shard(frame: Any, shard: tuple[int, int] | None) -> Any:
    if shard is None:
        return frame
    i, n = shard
    bounds = [len(frame) * k // n for k in range(n + 1)]
    return frame.iloc[bounds[i] : bounds[i + 1]]


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N (I counts from 0)")
    return i, n


# ---------------------------------------------------------------------------- models & indexes
def _model(args: argparse.Namespace) -> Any:
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


def _warn_skipped(skipped: list[tuple[Any, str]], total: int, shown: int = 5) -> None:
    """One summary on stderr; the full list stays in the index (``index.json``, "skipped")."""
    if not skipped:
        return
    print(f"warning: skipped {len(skipped)} of {total} entries that cannot be embedded "
          "(all listed under 'skipped' in the index's index.json), e.g.:", file=sys.stderr)
    for rid, err in skipped[:shown]:
        print(f"  {rid}: {str(err).splitlines()[0][:160]}", file=sys.stderr)


def _build_index(records: Any, args: argparse.Namespace, model: Any) -> Any:
    from matminer_clasp.index import EmbeddingIndex

    ok = records["structure"].notna()
    good = records[ok].reset_index(drop=True)
    meta = good.drop(columns=[c for c in ("structure", "error") if c in good.columns])
    index = EmbeddingIndex.build(
        list(good["structure"]), ids=list(good["id"]), metadata=meta.drop(columns="id"),
        model=model, batch_size=args.batch_size, show_progress_bar=True,
        dtype="float16" if getattr(args, "fp16", False) else "float32", ignore_errors=True,
    )
    index.skipped = [(r, e) for r, e in zip(records["id"][~ok], records["error"][~ok])] + (
        index.skipped
    )
    _warn_skipped(index.skipped, len(records))
    if not len(index):
        raise CliInputError("no structure could be embedded")
    index.model = args.model  # record the name, not the loaded instance
    return index


def _amcsd_records(args: argparse.Namespace) -> Any:
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


def _amcsd_index(args: argparse.Namespace, model: Any) -> Any:
    from matminer_clasp.index import EmbeddingIndex

    limit = f"-first{args.amcsd_limit}" if args.amcsd_limit else ""
    folder = cache_dir() / f"amcsd-index-{model_hash(args.model)}{limit}"
    if (folder / "index.json").is_file() and not args.rebuild:
        return EmbeddingIndex.load(folder)
    print(f"embedding AMCSD once; the index is cached in {folder}", file=sys.stderr)
    index = _build_index(_amcsd_records(args), args, model)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    index.save(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return EmbeddingIndex.load(folder)


def _corpus(args: argparse.Namespace, model: Any) -> Any:
    """The index a command searches: ``--index``, ``--amcsd`` or an INPUT path."""
    import numpy as np

    from matminer_clasp.index import EmbeddingIndex

    if getattr(args, "index", None):
        return EmbeddingIndex.load(args.index)
    if getattr(args, "amcsd", False):
        return _amcsd_index(args, model)
    if not getattr(args, "input", None):
        raise CliInputError("give an INPUT path, --index DIR or --amcsd")
    records = read_records(args.input)
    cols = [c for c in records.columns if str(c).startswith("clasp_")]
    if cols:  # the output of `matminer-clasp embed`
        ok = np.isfinite(records[cols].to_numpy(float)).all(axis=1)
        meta = records.loc[ok, [c for c in records.columns if c not in cols and c != "error"]]
        return EmbeddingIndex(records.loc[ok, cols].to_numpy(), meta, model=args.model)
    return _build_index(records, args, model)


# ---------------------------------------------------------------------------- commands
def cmd_embed(args: argparse.Namespace) -> int:
    """``embed INPUT OUT.parquet``."""
    import numpy as np
    import pandas as pd

    from matminer_clasp.inputs import embed_structures, reduced_formula

    records = read_records(args.input, args.shard)
    model = _model(args)
    ok = np.flatnonzero(records["structure"].notna().to_numpy())
    ids = list(records["id"])
    emb, kept, skipped = embed_structures(
        model, [records["structure"][i] for i in ok], [ids[i] for i in ok], args.batch_size,
        True, args.device, ignore_errors=True,
    )
    out = np.full((len(records), model.config.embedding_dim), np.nan, np.float32)
    out[ok[kept]] = emb
    errors = records["error"].to_numpy(dtype=object)
    for (_rid, msg), i in zip(skipped, np.setdiff1d(ok, ok[kept])):
        errors[i] = msg
    formulas = [reduced_formula(x) for x in records["structure"]]
    table = pd.concat(
        [pd.DataFrame({"id": records["id"], "formula": formulas, "error": errors}),
         pd.DataFrame(out, columns=[f"clasp_{i}" for i in range(out.shape[1])])],
        axis=1,
    )
    table["id"] = table["id"].astype(str)
    Path(args.out).expanduser().parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    n_bad = int(pd.notna(errors).sum())
    for rid, msg in zip(table["id"][pd.notna(errors)], errors[pd.notna(errors)]):
        print(f"warning: {rid}: {msg}", file=sys.stderr)
    print(f"embedded {len(table) - n_bad}/{len(table)} structures ({n_bad} errors) -> {args.out}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    """``index (INPUT | --amcsd) --out DIR``."""
    model = _model(args)
    if args.amcsd:
        records = _amcsd_records(args)
    elif args.input:
        records = read_records(args.input)
    else:
        raise CliInputError("give an INPUT path or --amcsd")
    index = _build_index(records, args, model)
    index.save(args.out)
    print(f"indexed {len(index)} structures ({len(index.skipped)} skipped) -> {args.out}")
    return 0


def _print_table(frame: Any, columns: list[str]) -> None:
    import pandas as pd

    shown = frame[[c for c in columns if c in frame.columns]].copy()
    if "title" in shown:
        shown["title"] = shown["title"].map(
            lambda t: "" if t is None or (isinstance(t, float) and pd.isna(t)) else str(t)[:60]
        )
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))


def cmd_screen(args: argparse.Namespace) -> int:
    """``screen QUERY (--index DIR | --amcsd | INPUT) --top-k K``."""
    from matminer_clasp.index import screen

    model = _model(args)
    index = _corpus(args, model)
    result = screen(args.query, index, top_k=args.top_k, model=model)
    if args.csv:
        result.to_csv(args.csv, index=False)
    _print_table(result, ["id", "formula", "mineral", "title", "score", "rank"])
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """``classify INPUT --labels a,b,c``."""
    import numpy as np
    import pandas as pd

    from matminer_clasp.zeroshot import ZeroShotClassifier

    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    model = _model(args)
    clf = ZeroShotClassifier(labels[0] if args.binary and len(labels) == 1 else labels,
                             model=model, binary=args.binary, batch_size=args.batch_size).fit()
    records = read_records(args.input)
    cols = [c for c in records.columns if str(c).startswith("clasp_")]
    if cols:
        X = records[cols].to_numpy(float)
        ok = np.isfinite(X).all(axis=1)
        X = X[ok]
    else:
        ok = records["structure"].notna().to_numpy()
        X = list(records["structure"][ok])
    names = [f"p_{c}" for c in (["no", "yes"] if args.binary else labels)]
    proba = np.full((len(records), len(names)), np.nan)
    pred = np.full(len(records), None, dtype=object)
    if ok.any():
        proba[ok] = clf.predict_proba(X)
        pred[ok] = clf.classes_[proba[ok].argmax(axis=1)]
    out = pd.DataFrame({"id": records["id"], "prediction": pred})
    out = pd.concat([out, pd.DataFrame(proba, columns=names)], axis=1)
    if "error" in records:
        out["error"] = records["error"].to_numpy()
    if args.out:
        out.to_csv(args.out, index=False)
    _print_table(out, list(out.columns))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``plot (--index DIR | INPUT) --out PNG``."""
    from matminer_clasp.plot import plot_embedding_map

    model = _model(args)
    index = _corpus(args, model)
    labels = None
    if args.labels_column:
        if args.labels_column not in index.metadata.columns:
            raise CliInputError(
                f"no column {args.labels_column!r}; available: {list(index.metadata.columns)}"
            )
        labels = list(index.metadata[args.labels_column])
    fig = plot_embedding_map(index, labels=labels, query=args.query, method=args.method,
                             model=model)
    fig.savefig(args.out, dpi=150, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``convert CKPT OUT_DIR``."""
    from matminer_clasp.convert import convert_official_checkpoint

    kwargs = {"tokenizer": args.tokenizer}
    if args.text_model:
        kwargs["text_model"] = args.text_model
    out = convert_official_checkpoint(args.ckpt, args.out_dir, **kwargs)
    print(f"converted {args.ckpt} -> {out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """``merge OUT_DIR MODEL MODEL [MODEL ...]``."""
    from matminer_clasp.model import ClaspModel, merge_models

    if len(args.models) < 2:
        raise CliInputError(f"merge needs at least 2 member models, got {len(args.models)}")
    members = [ClaspModel.from_pretrained(m) for m in args.models]
    merged = merge_models(members)
    merged.save_pretrained(args.out_dir)
    print(f"merged {len(members)} members ({merged.config.embedding_dim}-d) into {args.out_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``train CONFIG``."""
    from matminer_clasp.train.config import TrainConfig
    from matminer_clasp.train.trainer import fit

    config = TrainConfig.from_file(args.config)
    if args.output_dir is not None:
        config.output_dir = args.output_dir
    if args.resume is not None:
        config.resume = args.resume
    print(fit(config))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate MODEL --config CONFIG --split test --out DIR --bootstrap 1000``."""
    from matminer_clasp.train.evaluate import evaluate_cli

    evaluate_cli(args)
    print(f"wrote the report to {args.out}")
    return 0


# ---------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, batch: bool = True) -> None:
    p.add_argument("--model", default=None,
                   help="model folder or Hub id (default: the bundled CLaSP model)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: auto)")
    if batch:
        p.add_argument("--batch-size", type=int, default=64, help="structures per forward pass")


def _amcsd_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amcsd-db", default=None, help="path of the AMCSD SQLite file (optional)")
    p.add_argument("--amcsd-limit", type=int, default=None, metavar="N",
                   help="only the first N AMCSD entries (quick trials)")


def _corpus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR", help="an index folder made by `index`")
    p.add_argument("--amcsd", action="store_true",
                   help="the AMCSD mineral database (embedded once, then cached)")
    _amcsd_options(p)
    p.add_argument("--rebuild", action="store_true", help="re-embed AMCSD even if cached")


def build_parser() -> argparse.ArgumentParser:
    """The ``matminer-clasp`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="matminer-clasp",
        description="CLaSP crystal-text embeddings: embed, index, screen, classify, plot, train, "
        "evaluate, merge.",
    )
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inp = "CIF folder, .cif file, or parquet/JSON/JSONL/CSV table with a 'structure' column"

    p = sub.add_parser("embed", help="embed structures into a parquet table")
    p.add_argument("input", help=inp)
    p.add_argument("out", help="output .parquet (id, formula, error, clasp_0 ... clasp_{dim-1})")
    p.add_argument("--shard", type=_parse_shard, metavar="I/N",
                   help="only the I-th (from 0) of N contiguous shards, for job arrays")
    _common(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("index", help="build a searchable embedding index")
    p.add_argument("input", nargs="?", help=inp)
    p.add_argument("--out", required=True, metavar="DIR", help="index folder to write")
    p.add_argument("--amcsd", action="store_true", help="index the AMCSD mineral database")
    _amcsd_options(p)
    p.add_argument("--fp16", action="store_true", help="store float16 embeddings (half size)")
    _common(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("screen", help="rank crystals by similarity to a text query")
    p.add_argument("query", help='text, e.g. "garnet" or "ferroelectric perovskite"')
    p.add_argument("input", nargs="?", help=inp + ", or the output of `embed`")
    _corpus_options(p)
    p.add_argument("--top-k", type=int, default=10, help="rows to show (default 10)")
    p.add_argument("--csv", metavar="OUT", help="also write the ranking to a CSV file")
    _common(p)
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("classify", help="zero-shot labels for structures")
    p.add_argument("input", help=inp + ", or the output of `embed`")
    p.add_argument("--labels", required=True, help="comma-separated class names")
    p.add_argument("--binary", action="store_true", help='one label: "X" vs "not X"')
    p.add_argument("--out", metavar="CSV", help="write predictions and probabilities")
    _common(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("plot", help="2-D map of the embeddings (PNG)")
    p.add_argument("input", nargs="?", help=inp + ", or the output of `embed`")
    _corpus_options(p)
    p.add_argument("--out", required=True, metavar="PNG", help="image file to write")
    p.add_argument("--query", help="colour by cosine similarity to this text")
    p.add_argument("--labels-column", help="colour by this metadata column")
    p.add_argument("--method", default="umap", choices=["umap", "tsne", "pca"])
    _common(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("convert", help="official CLaSP checkpoint -> model folder")
    p.add_argument("ckpt", help="official Lightning checkpoint (.ckpt)")
    p.add_argument("out_dir", help="model folder to write")
    p.add_argument("--text-model", default=None, help="text encoder id (default: SciBERT)")
    p.add_argument("--tokenizer", default=None, help="local tokenizer folder (offline use)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("merge", help="ensemble of trained models in one space")
    p.add_argument("out_dir", help="model folder to write")
    p.add_argument("models", nargs="+", help="member model folders or Hub ids (2 or more)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("train", help="train a CLaSP model from a YAML/JSON config")
    p.add_argument("config", help="training config (.yaml, .yml or .json)")
    p.add_argument("--output-dir", default=None, help="override output_dir")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="resume from the newest checkpoint (or the given folder)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="zero-shot and retrieval report of a model")
    try:
        from matminer_clasp.train.evaluate import add_evaluate_arguments

        add_evaluate_arguments(p)
    except ImportError:  # training extras missing: keep the agreed options
        p.add_argument("model")
        p.add_argument("--config", required=True)
        p.add_argument("--split", default="test")
        p.add_argument("--out", required=True)
        p.add_argument("--bootstrap", type=int, default=1000)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``matminer-clasp``; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ClaspError, ValueError, OSError, KeyError, ImportError) as exc:
        if args.traceback:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
