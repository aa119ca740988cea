"""Writing files safely: atomically (a kill or a full disk never leaves half a file that a later step would read),
under an exclusive lock, with a C++ library's output kept off the terminal. Reading a user's file safely, the one
place for it: regular files only (a named pipe never blocks, a device is never opened), bounded in size and JSON
nesting, a damaged file named in one line; and resolving a user's path, with symlink loops and dangling links named
as such."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from .errors import RunError


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
    ``busy`` (its "{holder}" replaced) names that process. Where the file system cannot lock, go unguarded.
    fcntl is imported here, not with the package: native Windows has none, and ``--help`` and the commands that
    take no lock work there."""
    try:
        import fcntl
    except ImportError:
        raise RunError(
            "runs and sweeps lock their folders with fcntl, which native Windows lacks: use WSL, Linux or macOS."
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise RunError(busy.replace("{holder}", handle.read().strip() or "another process")) from None
    except OSError:  # no locks on this file system (some network mounts)
        pass
    with contextlib.suppress(OSError):  # unbuffered: on a full disk nothing waits to fail again at close
        handle.truncate(0)
        os.write(handle.fileno(), f"{holder}\n".encode())
    yield


MAX_READ_BYTES = 64 << 20  # a run's JSON or CSV file is kilobytes: one this large is not one of them
MAX_JSON_DEPTH = 64  # the project's JSON files nest a few levels; deeper would only exhaust Python's recursion
KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
         (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))  # fmt: skip


class NotAFile(OSError):
    """A path that is there but is no regular file one may read: a named pipe, a socket, a device, a folder, a
    symlink loop, a dangling link, or a file too large. ``str()`` is the line's middle: "PATH is a named pipe"."""

    def __init__(self, path, what: str):
        super().__init__(f"{path} is {what}")
        self.filename, self.what = str(path), what

    def __str__(self) -> str:
        return f"{self.filename} is {self.what}"


def kind(path: str | os.PathLike) -> str:
    """What ``path`` is, in words: "a file" (a regular one), "a folder", "a named pipe", "a socket", "a device",
    "a symlink loop", "a dangling link" (to ...), "missing", or "unreachable (reason)". Never opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
            return f"a dangling link (to {os.readlink(path)}, which does not exist)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "missing"
        return f"unreachable ({exc.strerror})"
    return next((name for test, name in KINDS if test(mode)), "not a file")


def open_regular(path: str | os.PathLike):
    """``path`` opened for reading in binary, once it is known to be a regular file: checked before it is opened
    (a device is never opened) and after (opened without blocking, so a named pipe swapped in meanwhile returns at
    once). FileNotFoundError if it is missing, NotAFile if it is anything else."""
    what = kind(path)
    if what == "missing":
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    if what != "a file":
        raise NotAFile(path, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotAFile(path, "not a regular file (it changed while being opened)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: str | os.PathLike, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`), at most ``limit`` of them (NotAFile beyond)."""
    with open_regular(path) as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise NotAFile(path, f"larger than {limit >> 20} MiB, too large for the file it should be")
    return raw


def read_text(path: str | os.PathLike, fix: str | None = None, error: type[Exception] = RunError) -> str:
    """The UTF-8 text of the regular file ``path``; an ``error`` naming it (and ``fix``) if it is missing, not a
    regular file, too large or not text."""
    try:
        return read_bytes(path).decode("utf-8")
    except (OSError, ValueError) as exc:
        raise error(unreadable(path, exc, fix)) from None


def unreadable(path, exc: BaseException | str, fix: str | None) -> str:
    """The line for a file that cannot be read: "PATH is a named pipe: fix." or "PATH is damaged (...): fix."."""
    if isinstance(exc, NotAFile):
        line = f"{exc}, not a file one can read"
    else:
        line = f"{path} is damaged ({exc if isinstance(exc, str) else f'{type(exc).__name__}: {exc}'})"
    return line + (f": {fix}." if fix else "")


def nesting(value, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep lists and objects nest in ``value`` (counted without recursion, up to ``limit`` + 1)."""
    deepest, todo = 0, [(value, 1)]
    while todo and deepest <= limit:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            todo += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def read_json(path: Path, fix: str | None = None, error: type[Exception] = RunError) -> dict:
    """The JSON object in the regular file ``path``; if it is missing, not a regular file (a named pipe, a
    symlink loop), too large, damaged, nested too deep or not an object, an ``error`` (RunError by default)
    naming it (and ``fix``, what to do about it)."""
    try:
        value = json.loads(read_bytes(path))
    except (OSError, ValueError) as exc:
        raise error(unreadable(path, exc, fix)) from None
    except RecursionError:
        problem = f"nested more than {MAX_JSON_DEPTH} levels deep"
    else:
        problem = None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"
        if not problem and nesting(value) > MAX_JSON_DEPTH:
            problem = f"nested more than {MAX_JSON_DEPTH} levels deep"
    if problem:
        raise error(unreadable(path, problem, fix))
    return value


def resolve_path(path: str | os.PathLike, fix: str, error: type[Exception] = RunError) -> Path:
    """A user's ``path``, made absolute with its symbolic links resolved (it need not exist). A symlink loop or a
    dangling link is an ``error`` that says so (and ``fix``), where Path.resolve would raise "Symlink loop"."""
    path = Path(path).expanduser()
    what = kind(path)
    if what == "a symlink loop" or what.startswith("a dangling link"):
        raise error(f"{path} is {what}: {fix}.")
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link changed meanwhile
        raise error(f"{path} is a symlink loop: {fix}.") from None


def writable_folder(path: str | os.PathLike) -> bool:
    """Whether files can be created in the folder ``path`` (one is made and removed): os.access says yes for root
    even where nothing can be created (``/proc``)."""
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


# --- writing on a disk that may be full, read-only or someone else's ---------------------------------------------

WRITE_FAULTS = {  # errno: (the cause in words, what to do about it)
    errno.ENOSPC: ("the disk is full", "free some space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space"),
    errno.EROFS: ("the file system is read-only", "remount it writable or use a folder on a writable disk"),
    errno.EACCES: ("permission denied", "make the folder writable or use another one"),
    errno.EPERM: ("operation not permitted", "make the folder writable or use another one"),
    errno.EISDIR: ("a folder stands where the file goes", "move that folder away"),
}


def write_fault(exc: OSError) -> tuple[str, str]:
    """(cause, fix) of a failed write, in words: a full, read-only or unwritable disk (WRITE_FAULTS) or else the
    system's own words and "fix the folder"."""
    return WRITE_FAULTS.get(exc.errno, (exc.strerror or type(exc).__name__, "fix the folder"))


def written_path(exc: OSError, where: str | os.PathLike | None = None) -> str:
    """The file a failed write was for: the one the error names (the final name, not :func:`replacing`'s temporary
    one beside it), else ``where``."""
    if not exc.filename:
        return str(where or "")
    path = Path(os.fsdecode(exc.filename))
    prefix, _, rest = path.name.partition("-")
    if prefix == ".partial" and rest.partition("-")[2]:
        path = path.with_name(rest.partition("-")[2])
    return str(path)


@contextlib.contextmanager
def writing(then: str, where: str | os.PathLike | None = None, error: type[Exception] = RunError):
    """Writes in the block that fail for the disk's sake (WRITE_FAULTS: full, read-only, not ours) end as one
    ``error``: "Could not write PATH (cause): fix, ``then``." Any other OSError passes. What the block wrote with
    :func:`write_atomic` is whole or absent, never half."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_FAULTS:
            raise
        cause, fix = write_fault(exc)
        raise error(f"Could not write {written_path(exc, where)} ({cause}): {fix}, {then}.") from None


def open_lock(path: Path, error: type[Exception] = RunError):
    """The lock file ``path`` opened for :func:`exclusive` (created if missing). A folder, named pipe, socket or
    device there is named as what it is in one ``error``, never opened (a pipe could block)."""
    what = kind(path)
    if what not in ("a file", "missing"):
        raise error(f"{path} is {what}, where this command keeps its lock file: remove it (nothing needs it), then "
                    "run the command again.")  # fmt: skip
    return open(path, "a+")  # noqa: SIM115 (the caller closes it)


def write_json(path: Path, value, default=None) -> None:
    """``value`` as indented JSON, atomically (:func:`write_atomic`). On a full disk, where no new copy fits beside
    ``path``, the same JSON unindented is written over ``path`` in place if it fits in the blocks ``path`` already
    holds: how a run ended (failed, the disk full) then still reaches its run.json. Otherwise the OSError, with
    ``path`` as it was."""
    try:
        write_atomic(path, json.dumps(value, indent=2, default=default) + "\n")
    except OSError as exc:
        compact = (json.dumps(value, separators=(",", ":"), default=default) + "\n").encode()
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not os.path.isfile(path):
            raise
        if len(compact) > os.stat(path).st_blocks * 512:  # writing past them would need the space there is not
            raise
        with open(path, "r+b") as file:
            file.write(compact)
            file.truncate()
