"""Where a run's per-epoch metrics go (`train.loggers`): `jsonl` (metrics.jsonl, always written: the
report and resume read it), `csv` (metrics.csv, one column per value, nested values as `key.sub`)
and `tensorboard` (RUN/tensorboard, if the optional `tensorboard` package is installed; never
required). Every file is rewritten from the whole history at each epoch, so a resumed run's files are
those of an uninterrupted one; TensorBoard's event files only append, so after a kill they may hold an
epoch twice (TensorBoard shows the later one)."""

from __future__ import annotations

import csv
import importlib.util
import io
from typing import Any

from .errors import ConfigError
from .runs import RunDir
from .storage import atomic_write_text


def flat_row(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(flat_row(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class MetricsLoggers:
    def __init__(self, run: RunDir, names: list[str]) -> None:
        if "tensorboard" in names and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("train.loggers asks for tensorboard, but the `tensorboard` package is not installed; "
                              "`pip install tensorboard`, or leave it out of train.loggers")
        self.run, self.names = run, names
        self.board = None

    def write(self, history: list[dict[str, Any]]) -> None:
        self.run.write_metrics(history)
        if "csv" in self.names:
            rows = [flat_row(row) for row in history]
            columns = list(dict.fromkeys(key for row in rows for key in row))
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(self.run.path / "metrics.csv", text.getvalue())
        if "tensorboard" in self.names and history:
            if self.board is None:
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(log_dir=str(self.run.path / "tensorboard"))
            row = flat_row(history[-1])
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.board.add_scalar(key, value, row["epoch"])
            self.board.flush()
