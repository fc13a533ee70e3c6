"""``python -m matminer_clasp.train CONFIG``: train from a YAML/JSON config.

Several processes: ``torchrun --nproc_per_node N -m matminer_clasp.train CONFIG``.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``CONFIG [--resume [PATH]] [--output-dir DIR]`` and run :func:`fit`."""
    parser = argparse.ArgumentParser(prog="python -m matminer_clasp.train", description=__doc__)
    parser.add_argument("config", help="training config (.yaml, .yml or .json)")
    parser.add_argument("--output-dir", default=None, help="override output_dir")
    parser.add_argument("--resume", nargs="?", const=True, default=None,
                        help="resume from the newest checkpoint (or the given folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from matminer_clasp.train.config import TrainConfig
    from matminer_clasp.train.trainer import fit

    config = TrainConfig.from_file(args.config)
    if args.output_dir is not None:
        config.output_dir = args.output_dir
    if args.resume is not None:
        config.resume = args.resume
    out = fit(config)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
