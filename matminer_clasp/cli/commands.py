"""The ``matminer-clasp`` commands: each parses nothing itself and calls the Python API."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from matminer_clasp.cli.corpus import (
    CliInputError,
    amcsd_records,
    build_index,
    check_output_folder,
    corpus_index,
    input_status,
    load_cli_model,
    model_hash,
    publish_index,
    read_records,
    warn_skipped,
)


def cmd_embed(args: argparse.Namespace) -> int:
    """``embed INPUT OUT.parquet``: refuses an existing OUT unless ``--overwrite``."""
    import numpy as np
    import pandas as pd

    from matminer_clasp.atomic import write_file_atomic
    from matminer_clasp.inputs import reduced_formula

    out_path = Path(args.out).expanduser()
    if out_path.exists() and not args.overwrite:
        raise CliInputError(f"{out_path} exists: refusing to overwrite it (pass --overwrite to "
                            "replace it, or choose another file)")
    records = read_records(args.input, args.shard, args.recursive)
    model = load_cli_model(args)
    readable = records["structure"].notna().to_numpy()
    ok = np.flatnonzero(readable)
    emb, report = model.encode_structures(
        [records["structure"][i] for i in ok], args.batch_size, True, args.device,
        errors="nan", ids=[records["id"][i] for i in ok], return_report=True,
    )
    out = np.full((len(records), model.config.embedding_dim), np.nan, np.float32)
    out[ok] = emb
    errors = records["error"].to_numpy(dtype=object)
    notes = records["note"].to_numpy(dtype=object)
    for k, exc in report.errors.items():
        errors[ok[k]] = str(exc)
    for k, extra in report.notes.items():
        notes[ok[k]] = "; ".join([n for n in [notes[ok[k]], *extra] if n])
    formulas = [reduced_formula(x) for x in records["structure"]]
    table = pd.concat(
        [pd.DataFrame({"id": records["id"], "formula": formulas, "error": errors,
                       "note": notes}),
         pd.DataFrame(out, columns=[f"clasp_{i}" for i in range(out.shape[1])])],
        axis=1,
    )
    table["id"] = table["id"].astype(str)
    write_file_atomic(out_path, table.to_parquet(index=False))  # never a half-written table
    bad = pd.notna(errors)
    warn_skipped(list(zip(table["id"][bad], errors[bad])), len(table), where="the 'error' column")
    print(f"embedded {len(table) - int(bad.sum())}/{len(table)} structures "
          f"({int(bad.sum())} errors, {int(pd.notna(notes).sum())} repaired) -> {args.out}")
    return input_status(args, int(bad.sum()), len(table))


def cmd_index(args: argparse.Namespace) -> int:
    """``index (INPUT | --amcsd) --out DIR``."""
    check_output_folder(args.out, "index",
                        rewritable=("index.json", "embeddings.npy", "metadata.parquet"))
    model = load_cli_model(args)
    if args.amcsd:
        records = amcsd_records(args)
    elif args.input:
        records = read_records(args.input, recursive=args.recursive)
    else:
        raise CliInputError("give an INPUT path or --amcsd")
    index = build_index(records, args, model)
    index.model_hash = model_hash(args.model)
    publish_index(index, Path(args.out).expanduser(), replace=True)  # never half an index
    print(f"indexed {len(index)} structures ({len(index.skipped)} skipped) -> {args.out}")
    return input_status(args, *args.input_failures)


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
    from matminer_clasp.screening import screen

    index = corpus_index(args)  # loads the crystal model only if structures must be embedded
    result = screen(args.query, index, top_k=args.top_k, model=args.model)
    if args.csv:
        result.to_csv(args.csv, index=False)
    _print_table(result, ["id", "formula", "mineral", "title", "score", "rank"])
    return input_status(args, *getattr(args, "input_failures", (0, 0)))


def cmd_classify(args: argparse.Namespace) -> int:
    """``classify INPUT --labels a,b,c``."""
    import numpy as np
    import pandas as pd

    from matminer_clasp.zeroshot import ZeroShotClassifier

    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    clf = ZeroShotClassifier(labels[0] if args.binary and len(labels) == 1 else labels,
                             model=args.model, binary=args.binary, batch_size=args.batch_size,
                             device=args.device).fit()  # needs the text half only
    records = read_records(args.input, recursive=args.recursive)
    errors = records["error"].to_numpy(dtype=object) if "error" in records else None
    cols = [c for c in records.columns if str(c).startswith("clasp_")]
    if cols:
        X = records[cols].to_numpy(float)
    else:  # the one path: unembeddable structures get NaN rows and their reason
        model = load_cli_model(args)
        readable = np.flatnonzero(records["structure"].notna().to_numpy())
        X = np.full((len(records), model.config.embedding_dim), np.nan)
        emb, report = model.encode_structures(
            [records["structure"][i] for i in readable], args.batch_size, True, args.device,
            errors="nan", ids=[records["id"][i] for i in readable], return_report=True,
        )
        X[readable] = emb
        for k, exc in report.errors.items():
            errors[readable[k]] = str(exc)
    ok = np.isfinite(X).all(axis=1)
    X = X[ok]
    if errors is not None:
        bad = pd.notna(errors)
        warn_skipped(list(zip(records["id"][bad], errors[bad])), len(records),
                      where="the 'error' column")
    names = [f"p_{c}" for c in (["no", "yes"] if args.binary else labels)]
    proba = np.full((len(records), len(names)), np.nan)
    pred = np.full(len(records), None, dtype=object)
    if ok.any():
        proba[ok] = clf.predict_proba(X)
        pred[ok] = clf.classes_[proba[ok].argmax(axis=1)]
    out = pd.DataFrame({"id": records["id"], "prediction": pred})
    out = pd.concat([out, pd.DataFrame(proba, columns=names)], axis=1)
    if errors is not None:
        out["error"] = errors
    if args.out:
        out.to_csv(args.out, index=False)
    _print_table(out, list(out.columns))
    return input_status(args, int((~ok).sum()), len(records))


def cmd_plot(args: argparse.Namespace) -> int:
    """``plot (--index DIR | INPUT) --out PNG``."""
    from matminer_clasp.plot import plot_embedding_map

    index = corpus_index(args)  # loads the crystal model only if structures must be embedded
    labels = None
    if args.labels_column:
        if args.labels_column not in index.metadata.columns:
            raise CliInputError(
                f"no column {args.labels_column!r}; available: {list(index.metadata.columns)}"
            )
        labels = list(index.metadata[args.labels_column])
    fig = plot_embedding_map(index, labels=labels, query=args.query, method=args.method,
                             model=args.model)
    fig.savefig(args.out, dpi=150, bbox_inches="tight")
    print(f"wrote {args.out}")
    return input_status(args, *getattr(args, "input_failures", (0, 0)))


def cmd_convert(args: argparse.Namespace) -> int:
    """``convert CKPT OUT_DIR``."""
    from matminer_clasp.convert import convert_official_checkpoint

    check_output_folder(args.out_dir, "converted model")
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
    check_output_folder(args.out_dir, "merged model")
    members = [ClaspModel.from_pretrained(m) for m in args.models]
    merged = merge_models(members)
    merged.save_pretrained(args.out_dir)
    print(f"merged {len(members)} members ({merged.config.embedding_dim}-d) into {args.out_dir}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """``interpolate OUT_DIR START END --alpha A``."""
    from matminer_clasp.model import ClaspModel, interpolate_models

    check_output_folder(args.out_dir, "interpolated model")
    start, end = ClaspModel.from_pretrained(args.start), ClaspModel.from_pretrained(args.end)
    try:
        mixed = interpolate_models(start, end, args.alpha)
    except ValueError as err:
        raise CliInputError(f"cannot interpolate {args.start} and {args.end}: {err}") from err
    mixed.save_pretrained(args.out_dir)
    print(f"wrote {1 - args.alpha:g} x {args.start} + {args.alpha:g} x {args.end} "
          f"to {args.out_dir}")
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


def cmd_teacher_features(args: argparse.Namespace) -> int:
    """``teacher-features CONFIG --out FILE [--teacher chgnet] [--split train]``."""
    from matminer_clasp.train.config import TrainConfig
    from matminer_clasp.train.data import load_records, split_ids
    from matminer_clasp.train.distill import compute_teacher_features, save_teacher_features

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CliInputError(f"{out} exists: refusing to overwrite it (pass --overwrite to "
                            "replace it)")
    config = TrainConfig.from_file(args.config)
    wanted = split_ids(config.data, args.split) if args.split is not None else None
    records = load_records(config.data, show_progress_bar=True, ids=wanted)
    ids = [str(i) for i in records["id"]]
    features, reasons = compute_teacher_features(ids, list(records["structure"]), args.teacher,
                                                 args.batch_size, show_progress_bar=True)
    save_teacher_features(out, ids, features, args.teacher, reasons, overwrite=args.overwrite)
    print(f"wrote {args.teacher} features of {len(ids) - len(reasons)} of {len(ids)} "
          f"structures ({features.shape[1]}-d) to {out}; {len(reasons)} without (reasons in "
          "the file's metadata)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate MODEL --config CONFIG --split test --out DIR --bootstrap 1000``."""
    from matminer_clasp.train.evaluate import evaluate_cli

    evaluate_cli(args)
    print(f"wrote the report to {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``compare REPORT_A REPORT_B [--bootstrap N] [--resample title] [--out FILE]``."""
    import json

    from matminer_clasp.train.compare import compare_reports, format_comparison

    result = compare_reports(args.report_a, args.report_b, n_boot=args.bootstrap,
                             seed=args.seed, resample=args.resample)
    print(format_comparison(result), end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve (--index DIR | --amcsd | INPUT) [--host H] [--port P]``: the search service."""
    import sys

    from matminer_clasp.cli.serve_options import check_port, structure_folder

    try:
        import uvicorn

        from matminer_clasp.serve.app import create_app
        from matminer_clasp.serve.service import ServeLimits
    except ImportError as exc:
        raise CliInputError(
            f"serve needs the 'serve' extra ({exc.name} is missing): "
            "pip install 'matminer-clasp[serve]'"
        ) from None
    check_port(args.host, args.port)  # before minutes of loading
    index = corpus_index(args)
    if index.model_hash is None and not args.index:  # embedded now, by --model
        index.model_hash = model_hash(args.model)
    structures, recursive = structure_folder(args)
    app = create_app(
        index, args.model, ServeLimits(max_k=args.max_k),
        map_method=None if args.map == "none" else args.map, structures=structures,
        recursive=recursive, amcsd_db=args.amcsd_db, threads=args.threads,
        max_batch=args.max_batch,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: there is no authentication; anyone who can "
              f"reach port {args.port} can search the index and read its CIFs", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {len(index)} structures at http://{shown}:{args.port}/ "
          f"(API docs at /docs; Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
