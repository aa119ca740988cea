"""CIFAR-100: find the archive, read it safely, check it and split it (numpy only; tf.data feeding is in
input_pipeline.py).

Sources are tried in this order: an explicit path (``--data`` / ``CIFAR100_DATA``), the Keras cache,
then the official download into the Keras cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import NotAFile, kind, open_regular, read_bytes, replacing

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
OFFICIAL_SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
ARCHIVE_NAME = "cifar-100-python.tar.gz"
KERAS_ARCHIVE_NAME = "cifar-100-python-target_archive"  # what keras.datasets.cifar100 downloads
MEMBERS = ("train", "test", "meta")
NUM_FINE, NUM_COARSE = 100, 20
IMAGE_SHAPE = (32, 32, 3)
ENV_VAR = "CIFAR100_DATA"
OFFICIAL_COUNTS = (50_000, 10_000)  # training and test images of the real CIFAR-100
MAX_MEMBER_BYTES = 1 << 30  # train, the largest member of the real archive, is 155 MB

HOW_TO_GET_DATA = (
    f"Put {ARCHIVE_NAME} (from {OFFICIAL_URL}) somewhere and pass --data PATH "
    f"(or set {ENV_VAR}=PATH), or copy it into the Keras cache as "
    f"~/.keras/datasets/{ARCHIVE_NAME}; `make demo` runs offline on generated data."
)


@dataclass(frozen=True)
class Split:
    """Images as uint8 NHWC with fine (0-99) and coarse (0-19) labels."""

    x: np.ndarray
    fine: np.ndarray
    coarse: np.ndarray

    def __len__(self) -> int:
        return len(self.fine)

    def take(self, index: np.ndarray) -> Split:
        return Split(self.x[index], self.fine[index], self.coarse[index])


@dataclass(frozen=True)
class Cifar100:
    """Train, validation and test splits plus both lists of class names."""

    train: Split
    val: Split
    test: Split
    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]
    source: str

    @property
    def fine_to_coarse(self) -> np.ndarray:
        """Superclass index of each fine class, read off the training labels."""
        labels = np.concatenate([self.train.fine, self.val.fine])
        coarse = np.concatenate([self.train.coarse, self.val.coarse])
        mapping = np.zeros(NUM_FINE, dtype=np.int64)
        mapping[labels] = coarse
        return mapping


# --------------------------------------------------------------------------- where the data is


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def cache_candidates(cache: Path) -> list[Path]:
    """The names Keras (current and older versions) gives the archive and its extracted folder."""
    return [
        cache / KERAS_ARCHIVE_NAME,
        cache / "cifar-100-python-target",
        cache / ARCHIVE_NAME,
        cache / "cifar-100-python",
    ]


def locate(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the archive or folder to read, downloading the official archive as a last resort."""
    given = path or os.environ.get(ENV_VAR)
    if given:
        found, what = Path(given).expanduser(), kind(Path(given).expanduser())
        if what == "missing":
            raise DataError(f"CIFAR-100 data not found at {found}. {HOW_TO_GET_DATA}")
        if what == "a symlink loop":
            raise DataError(
                f"{given} is a loop of symbolic links: point --data (or {ENV_VAR}) at the archive or folder."
            )
        if what not in ("a file", "a folder"):  # a named pipe would block the read forever
            raise DataError(f"{found} is {what}, not an archive or a folder: point --data (or {ENV_VAR}) at "
                            f"{ARCHIVE_NAME} or its extracted folder.")  # fmt: skip
        return found
    for candidate in cache_candidates(keras_cache_dir()):
        if candidate.exists():
            return candidate
    if not download:
        raise DataError(f"No CIFAR-100 data in the Keras cache ({keras_cache_dir()}). {HOW_TO_GET_DATA}")
    return download_official()


def download_official() -> Path:
    """The official archive, downloaded into the Keras cache (where Keras's own loader puts it) and checked
    against its sha256 before it is kept; with the standard library, so that no process loads TensorFlow
    just to fetch data."""
    path = keras_cache_dir() / KERAS_ARCHIVE_NAME
    try:
        with replacing(path) as partial, urllib.request.urlopen(OFFICIAL_URL, timeout=60) as response:
            with open(partial, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            if sha256(partial) != OFFICIAL_SHA256:
                raise ValueError("the download does not match the official sha256")
    except (OSError, ValueError) as exc:  # no network, a proxy page, a full disk: the fix is the same
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DataError(f"Could not download CIFAR-100 ({reason}). {HOW_TO_GET_DATA}") from None
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading safely


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR-100 files contain: builtins and plain numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DataError(
                f"Refused to unpickle {module}.{name}: CIFAR-100 files contain only lists, strings "
                "and numpy arrays. Use the official archive or one written by generated_data.py."
            )
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def unpickle(raw: bytes, member: str) -> dict:
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except DataError as exc:
        raise DataError(f"{member}: {exc}") from None
    except Exception as exc:
        raise DataError(f"{member}: not a readable pickle ({exc}). Re-download the archive.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{member}: expected a dict, found {type(obj).__name__}.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_members(source: Path) -> dict[str, dict]:
    """Read train/test/meta from a .tar.gz or from a folder holding them (or `cifar-100-python/`)."""
    if source.is_dir():
        folder = source / "cifar-100-python" if (source / "cifar-100-python").is_dir() else source
        missing = [m for m in MEMBERS if not (folder / m).is_file()]
        if missing:
            raise DataError(
                f"{folder} lacks {', '.join(missing)}: pass the folder that holds train, test and meta "
                f"(or {ARCHIVE_NAME} itself)."
            )
        return {m: unpickle(read_bytes(folder / m, MAX_MEMBER_BYTES), str(folder / m)) for m in MEMBERS}
    raw: dict[str, bytes] = {}
    try:
        with open_regular(source) as f, tarfile.open(fileobj=f, mode="r:*") as tar:
            for info in tar:
                name = Path(info.name).name
                if info.isfile() and name in MEMBERS and Path(info.name).parent.name == "cifar-100-python":
                    raw[name] = tar.extractfile(info).read()
    except NotAFile:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = "not a tar archive (gzip, bzip2, xz or plain)" if first.endswith(":") else first  # tarfile's list
        raise DataError(
            f"{source} is not a readable {ARCHIVE_NAME} ({reason}); it is truncated or corrupt (or another file). "
            "Delete it and download it again."
        ) from None
    missing = [m for m in MEMBERS if m not in raw]
    if missing:
        raise DataError(
            f"{source} lacks cifar-100-python/{', '.join(missing)}: it is not the CIFAR-100 python archive."
        )
    return {m: unpickle(raw[m], f"{source}: cifar-100-python/{m}") for m in MEMBERS}


def field(batch: dict, key: str, member: str):
    if key not in batch:
        raise DataError(f"{member}: key '{key}' missing; the file is not in the CIFAR-100 python format.")
    return batch[key]


def labels(batch: dict, key: str, member: str, count: int, n: int) -> np.ndarray:
    values = np.asarray(field(batch, key, member))
    if values.shape != (n,) or values.dtype.kind not in "iu":
        raise DataError(f"{member}: '{key}' must be {n} integers, found shape {values.shape} ({values.dtype}).")
    if n and (values.min() < 0 or values.max() >= count):
        raise DataError(f"{member}: '{key}' has values outside 0..{count - 1}.")
    return values.astype(np.int64)


def to_split(batch: dict, member: str) -> Split:
    data = field(batch, "data", member)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{member}: 'data' must be a uint8 array of shape (N, 3072), found {found}.")
    n = len(data)
    x = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(
        np.ascontiguousarray(x),
        labels(batch, "fine_labels", member, NUM_FINE, n),
        labels(batch, "coarse_labels", member, NUM_COARSE, n),
    )


def names(meta: dict, key: str, count: int) -> tuple[str, ...]:
    values = field(meta, key, "meta")
    if len(values) != count:
        raise DataError(f"meta: '{key}' must list {count} names, found {len(values)}.")
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def checked_source(path: str | os.PathLike | None, verify: bool, download: bool = True) -> Path:
    """:func:`locate` the data and, with ``verify``, compare an archive with the official sha256."""
    source = locate(path, download=download)
    if verify and source.is_file():
        digest = sha256(source)
        if digest != OFFICIAL_SHA256:
            raise DataError(
                f"{source} has sha256 {digest[:16]}..., not the official {OFFICIAL_SHA256[:16]}.... "
                "If it is your own copy in the same format, pass --no-verify (verify=False); "
                "otherwise download it again."
            )
    return source


def validated_source(
    path: str | os.PathLike | None, verify: bool, val_fraction: float = 0.1, download: bool = True, batch_size: int = 1
) -> Path:
    """The source :func:`load` reads, after everything it checks: the source is found, compared with the official
    sha256 when ``verify``, and its members read and validated (shapes, dtype, labels, class names, room for the
    hold-out, at least one training batch of ``batch_size`` and one test image). The pipeline calls it before it
    creates a run directory, so a bad archive leaves none."""
    ds = load(path, verify, val_fraction, download=download)
    if len(ds.train) < batch_size or not len(ds.test):
        raise DataError(
            f"{ds.source} holds {len(ds.train) + len(ds.val):,} training and {len(ds.test):,} test images (CIFAR-100 "
            f"has {OFFICIAL_COUNTS[0]:,} and {OFFICIAL_COUNTS[1]:,}): a run needs a batch of {batch_size} training "
            "images after the validation hold-out, and test images; use the complete archive."
        )
    return Path(ds.source)


def load(
    path: str | os.PathLike | None = None,
    verify: bool = True,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
) -> Cifar100:
    """Load CIFAR-100 with both label sets and a stratified, seeded validation hold-out
    (``val_fraction`` of the training split; 0.1 is 5,000 images).

    ``verify`` checks an archive against the official sha256; turn it off for your own copy in the
    same format. Folders cannot be checked and are only validated for structure. Every DataError names the
    archive or folder (from ``path``, ``$CIFAR100_DATA``, the Keras cache or the download).
    """
    try:
        source = checked_source(path, verify, download)
        members = read_members(source)
    except NotAFile as exc:  # swapped for a named pipe, say, after it was found
        raise DataError(f"{exc}, not an archive or a folder: {HOW_TO_GET_DATA}") from None
    except OSError as exc:  # unreadable (permissions, a vanished mount): the archive itself may be fine
        raise DataError(
            f"Cannot read {exc.filename or path}: {exc.strerror or exc}. Check the path and its permissions."
        ) from None
    try:
        train_all = to_split(members["train"], "train")
        test = to_split(members["test"], "test")
        fine_names = names(members["meta"], "fine_label_names", NUM_FINE)
        coarse_names = names(members["meta"], "coarse_label_names", NUM_COARSE)
        val_index = stratified_holdout(train_all.fine, round(val_fraction * len(train_all)), seed)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:  # e.g. class names that are not a list
        raise DataError(f"{source} is not in the CIFAR-100 python format ({exc}): use the official archive.") from None
    keep = np.setdiff1d(np.arange(len(train_all)), val_index)
    return Cifar100(train_all.take(keep), train_all.take(val_index), test, fine_names, coarse_names, str(source))


def stratified_holdout(labels_: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded hold-out with each class in proportion to its frequency."""
    if not 0 <= size < len(labels_):
        raise DataError(f"validation size {size} must be between 0 and {len(labels_) - 1}.")
    counts = np.bincount(labels_)
    exact = size * counts / len(labels_)
    quota = np.floor(exact).astype(int)
    extra = np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]
    quota[extra] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels_ == c))[:q] for c, q in enumerate(quota)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def load_for(cfg, run) -> Cifar100:
    """The data a run config asks for; generated data is written into the run directory once."""
    if cfg.generated:
        from .generated_data import write_archive

        if not run.generated_data.exists():
            with replacing(run.generated_data) as partial:
                write_archive(partial, seed=cfg.seed)
        return load(run.generated_data, verify=False, val_fraction=cfg.val_fraction, seed=cfg.seed)
    return load(cfg.data, verify=cfg.verify, val_fraction=cfg.val_fraction, seed=cfg.seed)


SPLITS = (("train", "training"), ("val", "validation"), ("test", "test"))  # a split's attribute, and in words


def in_words(items: list[str]) -> str:
    """The items joined as in a sentence: a; a and b; a, b and c."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def split_sizes(ds: Cifar100) -> str:
    """The splits in one sentence: their sizes (an empty validation split left out), the image shape, the classes."""
    sizes = [f"{len(getattr(ds, name)):,} {words}" for name, words in SPLITS if len(getattr(ds, name))]
    height, width, channels = ds.train.x.shape[1:]
    return (f"{in_words(sizes)} images of {height}x{width} pixels ({channels} channels, {ds.train.x.dtype}), "
            f"in {len(ds.fine_names)} classes grouped into {len(ds.coarse_names)} superclasses.")  # fmt: skip


def class_balance(ds: Cifar100) -> str:
    """The class balance in one sentence, from the counts: "Every class has 500 training and 100 test images." only
    where each split holds as many images of every class; else each uneven split's range and its fewest classes."""
    even, uneven = [], []
    for name, words in SPLITS:
        if not len(getattr(ds, name)):
            continue
        counts = np.bincount(getattr(ds, name).fine, minlength=len(ds.fine_names))
        if counts.min() == counts.max():
            even.append(f"{counts[0]:,} {words}")
            continue
        fewest = [ds.fine_names[i] for i in np.flatnonzero(counts == counts.min())]
        more = f" and {len(fewest) - 3} more" if len(fewest) > 3 else ""
        uneven.append(f"{words} {counts.min():,} to {counts.max():,} images per class (fewest: "
                      f"{', '.join(fewest[:3])}{more})")  # fmt: skip
    every = f"Every class has {in_words(even)} images." if even else ""
    return f"The classes are uneven: {'; '.join(uneven)}. {every}".strip() if uneven else every
