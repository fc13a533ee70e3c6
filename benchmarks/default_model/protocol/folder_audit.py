"""The command line the protocol's audits of evaluation folders share (issue 14).

``label_noise.py`` and ``by_language.py`` each read one or more ``matminer-clasp evaluate --out``
folders, compute a table per folder, print it and optionally write all tables as JSON:
:func:`run_audit` is that loop, so each script holds only its own computation and layout.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def run_audit(description: str, audit: Callable[[Path], dict[str, Any]],
              show: Callable[[dict[str, Any]], None],
              argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parse ``FOLDER... [--out FILE.json]``, audit and show each folder, write the JSON.

    Returns
    -------
    dict
        Folder (as given) -> its audit.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("folders", nargs="+", type=Path, help="evaluation output folders")
    parser.add_argument("--out", type=Path, help="write every folder's table here as JSON")
    args = parser.parse_args(argv)
    result = {str(folder): audit(folder) for folder in args.folders}
    for folder, rows in result.items():
        print(folder)
        show(rows)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result
