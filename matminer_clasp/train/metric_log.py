"""``metrics.csv`` of a run (rank 0 only), mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

__all__ = ["METRIC_COLUMNS", "MetricLog"]

#: Columns of ``metrics.csv``; a row leaves the ones it lacks empty.
METRIC_COLUMNS = ["step", "epoch", "split", "loss", "lr", "samples_per_s",
                  "recall@1", "recall@5", "recall@10", "elapsed_s", "distill_loss"]


class MetricLog:
    """Append training and validation rows to ``folder/metrics.csv``.

    Parameters
    ----------
    folder
        The run folder.
    enabled
        ``False`` on every rank but 0: then nothing is written.
    resume_step
        When resuming, the checkpoint's step: rows after it (written by the interrupted run) are
        dropped, so that the resumed run's rows replace them instead of repeating them.
    """

    def __init__(self, folder: Path, enabled: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.path = folder / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        rows = []
        if resume_step is not None and self.path.is_file():
            with self.path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (``step``, ``epoch``, ``split`` and any of the metric columns)."""
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, METRIC_COLUMNS).writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def close(self) -> None:
        """Flush and close TensorBoard's writer."""
        if self.tb is not None:
            self.tb.close()
