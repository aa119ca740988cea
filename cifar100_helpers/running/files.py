"""Writing files safely: atomically (a kill or a full disk never leaves half a file that a later step would read),
under an exclusive lock, with a C++ library's output kept off the terminal; and reading a JSON object back with
one line naming a damaged file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from ..errors import RunError


@contextlib.contextmanager
def replacing(path: Path):
    """A temporary path beside ``path`` (same folder, same ending, so Keras and numpy accept it) to write to;
    when the block ends it replaces ``path`` in one rename, and if the block fails it is removed. A crash or a
    full disk never leaves a half-written ``path`` that a later step would read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{secrets.token_hex(4)}-{path.name}")
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(partial) if partial.is_dir() else partial.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` via a temporary file and rename, so a crash never leaves a half-written file."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")
        os.chmod(partial, 0o644)


@contextlib.contextmanager
def stderr_into(path: str | Path):
    """File descriptor 2 appends to ``path`` for the duration, so that what C++ libraries write there (TensorFlow's
    start-up notes, Ray's connection retries), which Python's ``sys.stderr`` never sees, stays off the terminal."""
    sys.stderr.flush()
    saved, target = os.dup(2), os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


@contextlib.contextmanager
def exclusive(handle, busy: str, holder: str):
    """Hold an exclusive lock on the open file ``handle`` for the block (the system releases it if the
    process dies) and write ``holder`` into it; if another process holds it, a RunError
    ``busy`` (its "{holder}" replaced) names that process. Where the file system cannot lock, go unguarded."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise RunError(busy.replace("{holder}", handle.read().strip() or "another process")) from None
    except OSError:  # no locks on this file system (some network mounts)
        pass
    with contextlib.suppress(OSError):
        handle.truncate(0)
        handle.write(f"{holder}\n")
        handle.flush()
    yield


def read_json(path: Path, fix: str | None = None) -> dict:
    """The JSON object in ``path``; if it is unreadable, damaged or not an object, a RunError naming it (and
    ``fix``, what to do about it)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if isinstance(value, dict):
            return value
        problem = f"a JSON {type(value).__name__}, not an object"
    raise RunError(f"{path} is damaged ({problem})" + (f": {fix}." if fix else "")) from None
