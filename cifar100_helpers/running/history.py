"""``history.csv``: one row per finished epoch (loss, accuracy, top-5, validation, learning rate, seconds,
images/second), written by training and read by the notebooks, ``compare`` and ``sweep``. No TensorFlow."""

from __future__ import annotations

import csv
import io

from ..files import open_regular

HISTORY_FIELDS = (
    "epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5",
    "learning_rate", "seconds", "images_per_second",
)  # fmt: skip


def history_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: int(r["epoch"])))
    return out.getvalue()


def read_history(path) -> list[dict]:
    """Rows of ``history.csv`` with numbers as floats (epoch as int); [] if there is none yet."""
    try:
        with io.TextIOWrapper(open_regular(path), encoding="utf-8", newline="") as f:  # a named pipe never blocks
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    return [{k: (int(v) if k == "epoch" else float(v) if v else None) for k, v in row.items()} for row in rows]
