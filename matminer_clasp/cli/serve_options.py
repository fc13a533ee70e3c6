"""Options of ``matminer-clasp serve`` and the checks run before the index is loaded."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from matminer_clasp.cli.corpus import CliInputError, positive_int


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """The service's own options (the corpus options are added by the caller)."""
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 "
                   "exposes the service, without authentication, to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-k", type=positive_int, default=100, metavar="K",
                   help="largest k a request may ask for (default 100)")
    p.add_argument("--map", default="pca", choices=["pca", "umap", "tsne", "none"],
                   help="2-D embedding map of the page, computed at start-up (default pca)")
    p.add_argument("--structures", metavar="DIR",
                   help="folder the index was built from, to serve its CIFs (default: INPUT "
                   "when it is a folder or file; AMCSD CIFs come from larixite)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch / BLAS threads (default: the libraries' own; 1 on a busy "
                   "shared machine)")
    p.add_argument("--max-batch", type=positive_int, default=64, metavar="N",
                   help="most waiting query texts embedded in one forward pass (default 64; 1 "
                   "answers queries strictly one by one)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default info)")


def check_port(host: str, port: int) -> None:
    """Fail early, with one clear line, when ``host:port`` cannot be bound."""
    if not 0 < port < 65536:
        raise CliInputError(f"--port must be from 1 to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CliInputError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): another process may "
                "use the port (choose one with --port) or the address is not this machine's"
            ) from None


def structure_folder(args: argparse.Namespace) -> tuple[str | None, bool]:
    """Where CIFs of a user index are read from: ``--structures``, else a folder / file INPUT."""
    if args.structures:
        return args.structures, True
    source = getattr(args, "input", None)
    if source and not args.index and not args.amcsd:
        path = Path(source).expanduser()
        if path.is_dir() or path.name.lower().endswith((".cif", ".cif.gz", ".vasp", ".poscar")):
            return source, bool(args.recursive)
    return None, False
