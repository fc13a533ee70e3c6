"""``matminer-clasp``: command-line access to embedding, screening, zero-shot labels and training.

Every command is thin: it parses options, reads the input (a CIF folder, or a parquet / JSON /
JSONL / CSV table with a ``structure`` column), calls the Python API and prints or writes the
result. Inputs that cannot be read or embedded are skipped and reported. Exit status: 0 success,
1 every input failed (or any did, with ``--strict``), 2 bad usage or an unusable file; an error
is one line, ``error: ...`` (``--traceback`` shows the traceback).

The common case, ``matminer-clasp screen "garnet" --amcsd --top-k 10``, embeds the American
Mineralogist Crystal Structure Database once and caches the index under
``$MATMINER_CLASP_CACHE`` (default ``~/.cache/matminer_clasp``) as
``amcsd-index-<model hash>``, so later queries only embed the text.
"""

from __future__ import annotations

import argparse
import sys

from matminer_clasp.cli.commands import (
    cmd_classify,
    cmd_compare,
    cmd_convert,
    cmd_embed,
    cmd_evaluate,
    cmd_index,
    cmd_interpolate,
    cmd_merge,
    cmd_plot,
    cmd_screen,
    cmd_serve,
    cmd_teacher_features,
    cmd_train,
)
from matminer_clasp.cli.corpus import (
    CliInputError,
    cache_dir,
    model_hash,
    parse_shard,
    positive_int,
    read_records,
)
from matminer_clasp.cli.serve_options import add_serve_options
from matminer_clasp.errors import ClaspError


def _common(p: argparse.ArgumentParser, batch: bool = True) -> None:
    p.add_argument("--model", default=None,
                   help="model folder or Hub id (default: the bundled CLaSP model)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: auto)")
    if batch:
        p.add_argument("--batch-size", type=int, default=64, help="structures per forward pass")
    if any(a.dest == "input" for a in p._actions):
        p.add_argument("--recursive", action="store_true",
                       help="also read the sub-folders of an INPUT folder")
        p.add_argument("--strict", action="store_true",
                       help="exit with status 1 if any input is skipped (default: report and "
                       "go on; status 1 only when every input fails)")


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
    p.add_argument("--repair", action="store_true",
                   help="load an --index whose embeddings.npy has NaN, zero or non-unit rows by "
                   "dropping or re-normalising them (in memory)")


def build_parser() -> argparse.ArgumentParser:
    """The ``matminer-clasp`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="matminer-clasp",
        description="CLaSP crystal-text embeddings: embed, index, screen, classify, plot, serve, "
        "train, evaluate, merge, interpolate.",
    )
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inp = "CIF folder, .cif file, or parquet/JSON/JSONL/CSV table with a 'structure' column"

    p = sub.add_parser("embed", help="embed structures into a parquet table")
    p.add_argument("input", help=inp)
    p.add_argument("out", help="output .parquet (id, formula, error, clasp_0 ... clasp_{dim-1})")
    p.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="only the I-th (from 0) of N contiguous shards, for job arrays")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
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
    p.add_argument("--top-k", type=positive_int, default=10,
                   help="rows to show, at least 1 (default 10)")
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

    p = sub.add_parser("serve", help="search service with a web page (JSON API + browser UI)")
    p.add_argument("input", nargs="?", help=inp + ", or the output of `embed`")
    _corpus_options(p)
    add_serve_options(p)
    _common(p)
    p.set_defaults(func=cmd_serve)

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

    p = sub.add_parser("interpolate",
                       help="weights (1 - alpha) x START + alpha x END of a fine-tuned model")
    p.add_argument("out_dir", help="model folder to write")
    p.add_argument("start", help="the model before fine-tuning (folder or Hub id)")
    p.add_argument("end", help="the model fine-tuned from START (folder or Hub id)")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="weight of END, in [0, 1] (default: 0.5)")
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("train", help="train a CLaSP model from a YAML/JSON config")
    p.add_argument("config", help="training config (.yaml, .yml or .json)")
    p.add_argument("--output-dir", default=None, help="override output_dir")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="resume from the newest checkpoint (or the given folder)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("teacher-features",
                       help="a pretrained crystal model's features of a training corpus "
                            "(distillation targets)")
    p.add_argument("config", help="training config (.yaml, .yml or .json): its data section "
                                  "names the corpus")
    p.add_argument("--out", required=True, help="file to write (.safetensors)")
    p.add_argument("--teacher", default="chgnet", help="teacher model (default: chgnet)")
    p.add_argument("--split", choices=["train", "val", "test"], default=None,
                   help="only this side of the config's pinned split (default: every entry)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=cmd_teacher_features)

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

    p = sub.add_parser("compare", help="paired bootstrap of two evaluations (A - B)")
    p.add_argument("report_a", help="evaluate --out folder of model A, or several separated "
                                    "by commas (seeds of one recipe, averaged)")
    p.add_argument("report_b", help="the same for model B (same --config, --split and "
                                    "--keywords)")
    p.add_argument("--bootstrap", type=positive_int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resample", choices=["title", "structure"], default="title",
                   help="resampling unit: titles with all their structures (default) or "
                        "structures")
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    p.set_defaults(func=cmd_compare)
    return parser


#: Exit statuses of every command (docs/troubleshooting.md lists them too).
EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE = 0, 1, 2


def error_line(exc: BaseException) -> str:
    """One line for ``exc``: its message's first line; unexpected types are named."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:
        text = f"missing key {exc.args[0]!r}"
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, (ClaspError, ValueError, OSError, KeyError, ImportError)) and first:
        return first
    return f"{type(exc).__name__}: {first} (rerun with --traceback for details)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``matminer-clasp``; returns the exit status.

    0: success (inputs that could not be used are skipped and reported on stderr); 1: every
    input failed, or some did under ``--strict``; 2: bad usage, or an input, file or model
    that cannot be used. Errors are one ``error: ...`` line on stderr; ``--traceback`` shows
    the traceback instead.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error path ends in one line
        if args.traceback:
            raise
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_USAGE))



__all__ = ["CliInputError", "build_parser", "cache_dir", "main", "model_hash", "read_records"]
