"""``python -m matminer_clasp.cli``: the same as the ``matminer-clasp`` command."""

import sys

from matminer_clasp.cli import main

sys.exit(main())
