"""Classify your own images with a finished run's model: ``python -m cifar100_helpers predict RUN_DIR IMAGE...``.

Each image (any file Pillow reads: JPEG, PNG, GIF, BMP, WebP, ...; any mode) is turned upright by its EXIF
orientation, converted to RGB (transparent pixels composited onto white, 16-bit grey scaled to 8 bits), cut to
its central square (or, with ``crop=False``, taken whole and squashed), and resized to 32x32 by area averaging
(Pillow's BOX filter: each output pixel is the mean of the input pixels it covers, so shrinking is antialiased;
bicubic where an image is smaller than 32 pixels). The run's ``model.keras`` then classifies it with the run's
own test-time augmentation (``tta`` in its ``config.json``) through :func:`evaluation.predict`, the function the
report's test accuracy comes from.

Class names and superclasses: a run directory does not store them, and the run's data may be gone (a Colab
download, another machine) by the time someone classifies a photo. They are the fixed CIFAR-100 tables, which
the generated dataset also uses (:mod:`generated_data`), and a test checks them against the real archive's
meta and labels, so predict needs nothing but ``model.keras`` and ``config.json``.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..classify import Prediction, classify
from ..config import TTA_MODES
from ..errors import ImageError, RunError
from ..files import kind as path_kind
from ..files import open_regular, read_json
from ..running.run_dir import RunDir

SIZE = 32
RESIZE_METHOD = (
    "central square crop, then area averaging down to 32x32 (Pillow BOX filter; bicubic for images smaller "
    "than 32 pixels)"
)
SQUASH_METHOD = "whole image squashed to 32x32 by area averaging (Pillow BOX filter; bicubic below 32 pixels)"


# --------------------------------------------------------------------------- reading images


def open_image(path: Path) -> Image.Image:
    """The image at ``path``, opened lazily (header only); ImageError if Pillow cannot identify it. Images larger
    than Pillow's MAX_IMAGE_PIXELS are read without its warning (a JPEG is shrunk while decoding); those over
    twice that, its hard limit against decompression bombs, are refused like unreadable ones."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read. Pass JPEG or PNG files, or folders of them.") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc}). Re-save or re-download it.") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB whatever the mode: alpha composited onto white, 16/32-bit grey scaled to 0-255."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values * (255 / 65535)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def read_image(path: str | Path, crop: bool = True) -> np.ndarray:
    """One image file as a 32x32x3 uint8 array, prepared as the module docstring says."""
    path = Path(path)
    image = open_image(path)
    try:
        with image:
            image.draft(None, (2 * SIZE, 2 * SIZE))  # JPEG: let the decoder shrink huge photos by up to 8x first
            image = to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc}). Re-save or re-download it.") from None
    width, height = image.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2) if crop else None
    resample = Image.Resampling.BOX if side >= SIZE else Image.Resampling.BICUBIC
    return np.asarray(image.resize((SIZE, SIZE), resample, box=box), dtype=np.uint8)


def kind(path: Path) -> str:
    """What ``path`` is (files.kind): "folder", "file" (a regular one), "missing", or else what it is ("a named
    pipe", "a symlink loop": reading a pipe can block forever). A path the system refuses to look up (a name too
    long, a file as a folder): ImageError."""
    what = path_kind(path)
    if what.startswith("unreachable ("):
        raise ImageError(f"{path}: {what.removeprefix('unreachable (')[:-1]}. Check the path.")
    return {"a folder": "folder", "a file": "file"}.get(what, what)


def image_files(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """The image files named by ``paths`` (files, or folders: their images in name order, not recursive; each
    file once), and notes on what was skipped in folders. A named file that is missing, not a regular file or not
    an image, or a folder with no image, is an ImageError."""
    files, notes = [], []
    if "" in map(str, paths):
        raise ImageError("an IMAGE is an empty path: pass image files or folders (a folder is named, never implied).")
    for given in map(Path, paths):
        what = kind(given)
        if what == "folder":
            found = []
            for entry in sorted(given.iterdir()):
                if entry.name.startswith("."):
                    continue
                entry_kind = kind(entry)
                if entry_kind == "folder":
                    notes.append(f"skipped folder {entry} (folders are not searched recursively)")
                    continue
                if entry_kind != "file":
                    notes.append(f"skipped {entry} (not a regular file)")
                    continue
                try:
                    open_image(entry).close()
                    found.append(entry)
                except ImageError:
                    notes.append(f"skipped {entry} (not an image)")
            if not found:
                raise ImageError(
                    f"{given} holds no image files: pass a folder with JPEG or PNG files, or the files themselves."
                )
            files += found
        elif what == "file":
            open_image(given).close()
            files.append(given)
        elif what == "missing":
            raise ImageError(f"{given}: no such file or folder. Check the path.")
        else:
            raise ImageError(f"{given}: not a regular file ({what}). Pass image files or folders.")
    unique = {f.resolve(): f for f in reversed(files)}  # a file named twice (also via its folder) is shown once
    return [f for f in files if unique[f.resolve()] is f], notes


# --------------------------------------------------------------------------- the run's model


def run_tta(run: RunDir) -> str:
    """The test-time augmentation the run reported (``tta`` in its config.json)."""
    fix = "it is written when the run starts: pass a run directory made by `python -m cifar100_helpers run`"
    if path_kind(run.config) == "missing":
        raise RunError(f"{run.root} has no config.json: {fix}.")
    saved = read_json(run.config, "restore it from the run's run.json (key 'config')")
    tta = saved.get("tta", "none")
    if tta not in TTA_MODES:
        raise RunError(f"{run.config}: tta={tta!r} is not one of {', '.join(TTA_MODES)}: restore the file.")
    return tta


def check_run(run_dir: str | Path) -> RunDir:
    """A run directory with a complete model.keras; one line naming the fix otherwise (nothing is loaded yet,
    TensorFlow is not imported)."""
    if not str(run_dir).strip():
        raise RunError("RUN_DIR is an empty path: pass the run folder (e.g. outputs/cpu-<date>-<time>).")
    run = RunDir(Path(run_dir))
    if not run.root.is_dir():
        raise RunError(
            f"{run_dir}: no such run directory. Pass a folder made by `python -m cifar100_helpers run` "
            "(e.g. outputs/cpu-<date>-<time>)."
        )
    what = path_kind(run.model)
    if what == "missing":
        raise RunError(
            f"{run.root} has no model.keras (its training has not finished, or it is not a run directory): "
            f"continue it with `python -m cifar100_helpers run --resume {run_dir}`, or pass a finished run."
        )
    if what != "a file":
        raise RunError(f"{run.model} is {what}, not a model file: put the run's model.keras back, or retrain.")
    with open_regular(run.model) as f:
        complete = zipfile.is_zipfile(f)
    if not complete:  # cut short by a full disk or a copy; Keras would say "File not found"
        raise RunError(
            f"{run.model} is damaged or truncated (not a complete .keras zip archive): copy it again from where the "
            f"run trained, or retrain (`python -m cifar100_helpers run`)."
        )
    return run


def tensorflow_modules():
    """The package's evaluation and models modules, which import TensorFlow; one line if it cannot be imported."""
    try:
        from .. import evaluation, models
    except ImportError as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RunError(
            f"TensorFlow cannot be imported ({reason}): predict needs it; reinstall with `pip install -e .`."
        ) from None
    return evaluation, models


def load_model(run: RunDir):
    """The run's trained Keras model (without its optimizer)."""
    _, models = tensorflow_modules()
    try:
        return models.load(run.model, compile=False)
    except Exception as exc:  # a damaged zip, a file from an incompatible Keras: the fix is the same
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RunError(
            f"{run.model} cannot be loaded ({reason}): it is damaged or from another Keras version; "
            f"use `python -m cifar100_helpers run --resume` on an unfinished run, or retrain."
        ) from None


def predict_files(
    run_dir: str | Path, paths: list[str | Path], top: int = 5, crop: bool = True
) -> tuple[list[Prediction], list[str], str]:
    """Classify image files (or folders of them) with a run's model: (predictions, skip notes, tta used).
    Every input is checked before the model is loaded, so a mistake costs no waiting."""
    run = check_run(run_dir)
    tta = run_tta(run)
    files, notes = image_files(paths)
    files, images, unreadable = read_images(files, crop)
    return classify(load_model(run), images, tta, [str(f) for f in files], top), notes + unreadable, tta


def read_images(files: list[Path], crop: bool = True) -> tuple[list[Path], np.ndarray, list[str]]:
    """The files that decode (:func:`read_image`) and their images, and a note for each that does not (cut short,
    damaged): one bad file does not cost the others. If none decodes, the first one's ImageError."""
    read, notes, errors = {}, [], []
    for path in files:
        try:
            read[path] = read_image(path, crop=crop)
        except ImageError as exc:
            errors.append(exc)
            notes.append(f"skipped {path} (truncated or unreadable image)")
    if not read:
        raise errors[0]
    return list(read), np.stack(list(read.values())), notes


def report(predictions: list[Prediction], run_dir: str | Path, tta: str, crop: bool = True) -> str:
    """What the command prints: a header line, then one block per image."""
    method = RESIZE_METHOD if crop else SQUASH_METHOD
    head = f"{len(predictions)} image(s), {method}; model {Path(run_dir) / 'model.keras'}, TTA {tta}"
    return "\n".join([head, *(p.text() for p in predictions)])


def as_json(predictions: list[Prediction], run_dir: str | Path, tta: str, notes: list[str], crop: bool = True) -> str:
    return json.dumps(
        {
            "run": str(run_dir),
            "tta": tta,
            "resize": RESIZE_METHOD if crop else SQUASH_METHOD,
            "predictions": [p.to_dict() for p in predictions],
            "skipped": notes,
        },
        indent=2,
    )
