"""Live progress of a run: one line per finished epoch (written by epoch_files.EpochProgress) and a line when a
long step starts, appended to the run's ``progress.log`` by the notebook kernel and followed by the pipeline, so a
user of ``run`` sees them as they happen, on a terminal or in a log file alike."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def append(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")


def note(path: Path, text: str) -> None:
    """A line saying that a long step starts (evaluation, TTA, Grad-CAM ...); also printed."""
    append(path, text)
    print(text, flush=True)


def epoch_line(epoch: int, epochs: int, logs: dict, seconds: float, images_per_second: float, eta: float) -> str:
    val = f", val_accuracy {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else ""
    return (
        f"epoch {epoch}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, accuracy "
        f"{logs.get('accuracy', float('nan')):.4f}{val}, {seconds:.1f} s, {images_per_second:,.0f} images/s, "
        f"ETA {duration(eta)} for the remaining {epochs - epoch} epoch(s)"
    )


@contextlib.contextmanager
def following(path: Path, out=None, interval: float = 0.5):
    """Print the lines appended to ``path`` while the block runs (the pipeline follows its kernel)."""
    path, out = Path(path), out or sys.stdout
    start = path.stat().st_size if path.exists() else 0
    stop = threading.Event()

    def follow():
        position = start
        while True:
            ended = stop.wait(interval)
            if path.exists():
                with open(path) as f:
                    f.seek(position)
                    text = f.read()
                    position = f.tell()
                if text:
                    out.write(text)
                    out.flush()
            if ended:
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
