"""Export a finished run's model for serving: ``python -m cifar100_helpers export RUN_DIR --format ...``.

Keras's own ``model.export`` does the work: ``tf_saved_model`` (TensorFlow alone), ``litert`` (a ``.tflite`` file;
TensorFlow's converter) and ``onnx`` (through tf2onnx). Keras before 3.13 (Colab's TF 2.19 stack has 3.10) has no
``litert``: there the same two steps Keras takes, a SavedModel and TensorFlow's converter, are done here. Every
artifact takes what the Keras model takes, float32 images of shape (N, 32, 32, 3) with values 0-255 (RGB, not
rescaled: the model rescales them itself), and returns (N, 100) softmax probabilities in CIFAR-100's fine-label order.
It is the network alone: the run's test-time augmentation is not inside, so to reproduce a flip-TTA report number
average its outputs on the images and on their mirror images (``x[:, :, ::-1]``).

The artifact computes in float32 whatever precision the run trained in: a model trained in mixed precision (bfloat16
on a CPU with AVX512_BF16/AMX or a TPU, float16 on a GPU) keeps float32 weights, which go into a float32 build of the
same network (:func:`float32_model`). Before it is moved to the output path, the artifact is reloaded with its runtime
(``tf.saved_model.load``, the LiteRT interpreter, onnxruntime) and its outputs compared with that float32 Keras model's
on a few images, within TOLERANCE; one that fails is deleted, so nothing unverified is left to block a retry. How far
the mixed-precision model as trained is from it (bfloat16 rounding: up to about 0.02 in a probability) is reported,
not checked. Where the runtime is not installed the check is skipped with a note. The converter and runtime packages
are the optional extra ``export`` (``pip install -e .[export]``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..data import IMAGE_SHAPE
from ..errors import ExportError
from ..files import stderr_into
from ..models import precision_of
from ..running.run_dir import RunDir, check_output
from .predict import check_run, load_model

INSTALL = "pip install -e .[export]"
CHECK_IMAGES = 16
TOLERANCE = 1e-4  # largest difference in any probability accepted between the artifact and the float32 Keras model


@dataclass(frozen=True)
class Format:
    keras_name: str  # the ``format=`` of keras.Model.export
    converter: tuple[str, ...]  # modules the conversion needs beyond TensorFlow
    runtime: tuple[str, ...]  # modules the reload check needs (any one of them)
    suffix: str  # what the output path must end with ("" for a folder)


FORMATS = {
    "savedmodel": Format("tf_saved_model", (), ("tensorflow",), ""),
    "tflite": Format("litert", (), ("ai_edge_litert", "tensorflow"), ".tflite"),
    "onnx": Format("onnx", ("tf2onnx", "onnx"), ("onnxruntime",), ".onnx"),
}


def missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_converter(fmt: str) -> None:
    absent = missing(FORMATS[fmt].converter)
    if absent:
        raise ExportError(f"exporting to {fmt} needs {' and '.join(absent)}, not installed here: {INSTALL}")


def output_path(run: RunDir, fmt: str, output: str | Path | None) -> Path:
    """Where the artifact goes: ``output``, or the run's default (RunDir.export); never overwritten."""
    suffix = FORMATS[fmt].suffix
    if output and suffix and Path(output).suffix != suffix:
        raise ExportError(f"--output {output}: --format {fmt} writes a file ending in {suffix}, e.g. model{suffix}.")
    path = check_output(output or run.export(fmt), folder=not suffix)
    if path.exists():
        raise ExportError(f"{path} already exists and is never overwritten: delete it or pass --output PATH.")
    return path


def float32_model(model):
    """``model`` itself when it computes in float32; otherwise a float32 copy with the same weights. Models trained
    with mixed precision (a GPU's float16; bfloat16 on a TPU or a CPU with AVX512_BF16/AMX) compute in
    float16/bfloat16 over float32 weights; tf2onnx cannot convert those casts, and the runtimes would round
    differently from TensorFlow, so every artifact is this float32 build, checked against it."""
    from .. import models

    return models.in_precision(model, "float32")


def register_erfc_for_onnx() -> None:
    """Teach tf2onnx TensorFlow's ``Erfc`` op as ``1 - Erf(x)``. TensorFlow computes exact GELU (the airbench
    networks' activation) with erfc, which tf2onnx 1.17 cannot convert; the handler is registered the way
    tf2onnx registers its own (its ``tf_op`` decorator), and only where tf2onnx has none."""
    from tf2onnx import constants, utils
    from tf2onnx.handler import tf_op

    if any("Erfc" in ops for ops in tf_op.get_opsets().get(constants.ONNX_DOMAIN, [])):
        return

    @tf_op("Erfc")
    class Erfc:  # registered by the decorator
        @classmethod
        def version_9(cls, ctx, node, **kwargs):  # ONNX Erf exists from opset 9
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            node.type = "Erf"
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            sub = ctx.insert_new_node_on_output(
                "Sub", node.output[0], inputs=[one.output[0], node.output[0]], name=utils.make_name(node.name)
            )
            ctx.copy_shape(node.output[0], sub.output[0])


def staging_prefix(pid: int | str) -> str:
    """The start of the name of the hidden folder beside the output where process ``pid`` writes the artifact
    before renaming it into place: short, so that any legal output name fits inside it."""
    return f".export-{pid}-"


def remove_stale_staging(folder: Path) -> None:
    """Delete the staging folders in ``folder`` whose export was killed before it could clean up (its process is
    gone); those of exports still at work stay."""
    for staging in folder.glob(staging_prefix("*") + "*"):
        pid = staging.name.split("-")[1]
        if pid.isdigit() and not running(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def export_model(model, fmt: str, path: Path, verify: Callable[[Path], object] | None = None):
    """Write ``model`` in float32 (:func:`float32_model`) as ``fmt`` to ``path`` through a staging folder beside it;
    ``verify(staged_path)`` runs before the artifact is renamed into place and its result is returned, so a failure
    in writing or in ``verify`` leaves nothing at ``path``. The staging folders of killed exports are removed first."""
    require_converter(fmt)
    if fmt == "onnx":
        register_erfc_for_onnx()
    model = float32_model(model)
    model(np.zeros((1, *IMAGE_SHAPE), np.float32), training=False)  # the ONNX exporter wants a called model
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(path.parent)
        staging = tempfile.TemporaryDirectory(dir=path.parent, prefix=staging_prefix(os.getpid()))
    except OSError as exc:
        raise ExportError(f"Cannot write {path} ({exc.strerror}): pass --output under a writable folder.") from None
    with staging as tmp:
        staged = Path(tmp) / path.name
        write(model, fmt, staged)
        verified = verify(staged) if verify else None
        staged.rename(path)
    return verified


def write(model, fmt: str, path: Path) -> None:
    """Keras's ``model.export`` (or :func:`write_tflite` on Keras before 3.13) of ``model`` as ``fmt`` to ``path``,
    for float32 images of any batch size."""
    signature = [tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32, name="image")]  # fixed 32x32, any batch
    try:
        with warnings.catch_warnings():  # Keras's numpy-2 patch of tf2onnx touches np.object
            warnings.simplefilter("ignore", FutureWarning)
            if fmt == "tflite" and not keras_exports_litert():
                write_tflite(model, path, signature)
            else:
                model.export(str(path), format=FORMATS[fmt].keras_name, input_signature=signature, verbose=False)
    except ImportError as exc:
        raise ExportError(f"exporting to {fmt} failed to import {exc.name or exc}: {INSTALL}") from None


def keras_exports_litert() -> bool:
    return importlib.util.find_spec("keras.src.export.litert") is not None


def write_tflite(model, path: Path, signature) -> None:
    """What Keras 3.13+ does for ``format="litert"``, for older Keras: a SavedModel, then TensorFlow's converter
    (TensorFlow Lite builtins, TensorFlow ops where a builtin is missing)."""
    with tempfile.TemporaryDirectory(dir=path.parent) as saved:
        model.export(saved, format="tf_saved_model", input_signature=signature, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        path.write_bytes(converter.convert())


def runtime(fmt: str) -> str | None:
    """The package that runs a ``fmt`` artifact here, or None when none is installed."""
    if fmt == "tflite":  # TensorFlow's own interpreter is deprecated in favour of ai-edge-litert, still in TF 2.21
        return "ai-edge-litert" if not missing(("ai_edge_litert",)) else "tensorflow (tf.lite)"
    return None if missing(FORMATS[fmt].runtime) else FORMATS[fmt].runtime[0]


def runner(fmt: str, path: Path):
    """A function float32 images -> probabilities that runs the artifact at ``path`` with its own runtime
    (:func:`runtime`; the caller checks that one is installed)."""
    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(path))  # kept referenced: its variables live as long as it does
        return lambda x: loaded.serve(tf.constant(x, tf.float32)).numpy()
    if fmt == "tflite":
        if runtime(fmt) == "ai-edge-litert":
            from ai_edge_litert.interpreter import Interpreter
        else:
            Interpreter = tf.lite.Interpreter

        def run_tflite(x):
            # tf.lite's own interpreter is chosen knowingly: not its 6 lines of notice; and the runtime's C++ line
            # "Created TensorFlow Lite XNNPACK delegate for CPU" stays off the terminal (errors still raise)
            with warnings.catch_warnings(), stderr_into(os.devnull):
                warnings.filterwarnings("ignore", r".*tf\.lite\.Interpreter is deprecated", UserWarning)
                interpreter = Interpreter(model_path=str(path))
                source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
                interpreter.resize_tensor_input(source["index"], list(x.shape))
                interpreter.allocate_tensors()
                interpreter.set_tensor(source["index"], np.asarray(x, np.float32))
                interpreter.invoke()
            return interpreter.get_tensor(target["index"])

        return run_tflite
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.asarray(x, np.float32)})[0]


def check_images(count: int = CHECK_IMAGES, seed: int = 0) -> np.ndarray:
    """Deterministic uint8-range test images (float32): colour ramps with noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, IMAGE_SHAPE[1], dtype=np.float32)
    base = rng.uniform(0, 255, size=(count, 1, 1, 3)) * ramp[None, :, None, None]
    noisy = base + rng.normal(0, 30, size=(count, *IMAGE_SHAPE))
    return np.clip(np.rint(noisy), 0, 255).astype(np.float32)


def difference(model, fmt: str, path: Path, images: np.ndarray | None = None) -> float:
    """Largest absolute difference between the artifact's and the Keras model's probabilities on ``images``
    (default :func:`check_images`)."""
    images = check_images() if images is None else np.asarray(images, np.float32)
    return float(np.max(np.abs(runner(fmt, path)(images) - model.predict(images, verbose=0))))


def precision_difference(model, reference) -> float | None:
    """Largest probability difference on :func:`check_images` between the model as trained (mixed precision) and
    its float32 build ``reference``; None when the model computes in float32 (``reference`` is the model)."""
    if reference is model:
        return None
    images = check_images()
    return float(np.max(np.abs(model.predict(images, verbose=0) - reference.predict(images, verbose=0))))


def verifier(reference, fmt: str, path: Path) -> Callable[[Path], float]:
    """A check of a staged artifact against the float32 Keras model ``reference``: its largest probability
    difference, or an ExportError above TOLERANCE (``path`` is where the artifact would have gone)."""

    def verify(staged: Path) -> float:
        largest = difference(reference, fmt, staged)
        if not largest <= TOLERANCE:
            raise ExportError(
                f"the {fmt} export differs from the float32 Keras model by up to {largest:.2g} in a probability "
                f"(more than {TOLERANCE:g}), so it was deleted, not saved as {path}: the converter changed the "
                "model; report it with the package versions."
            )
        return largest

    return verify


@dataclass(frozen=True)
class Exported:
    path: Path
    runtime: str | None  # what checked it; None: no runtime installed, not checked
    difference: float | None  # largest probability difference from the float32 Keras model on CHECK_IMAGES images
    precision: str = "float32"  # the dtype policy the run's model was trained and saved in
    precision_difference: float | None = None  # that model against its float32 build (None: it is float32)

    def summary(self) -> str:
        lines = [f"Saved {self.path}"]
        if self.runtime is None:
            lines[0] += f" (not checked: its runtime is not installed; {INSTALL})"
        else:
            lines.append(
                f"Checked with {self.runtime}: largest probability difference from the Keras model in float32 "
                f"{self.difference:.1e} on {CHECK_IMAGES} images (accepted up to {TOLERANCE:g})"
            )
        if self.precision_difference is not None:
            lines.append(
                f"The model trained in {self.precision} and the export computes in float32 with the same weights: "
                f"their probabilities differ by up to {self.precision_difference:.1e} on the same images "
                f"(rounding in {self.precision}; not checked)"
            )
        return "\n".join(lines)


def export(run_dir: str | Path, fmt: str, output: str | Path | None = None) -> Exported:
    """Export a run's model as ``fmt`` (savedmodel, tflite, onnx) in float32, reloading the artifact with its
    runtime and comparing it with the float32 Keras model before it is moved to the output path. A difference
    above TOLERANCE is an ExportError and leaves nothing at the output path."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    run = check_run(run_dir)
    path = output_path(run, fmt, output)
    require_converter(fmt)  # before loading the model: the fix costs no waiting
    model = load_model(run)
    reference = float32_model(model)
    checker = runtime(fmt)
    largest = export_model(reference, fmt, path, verifier(reference, fmt, path) if checker else None)
    return Exported(path, checker, largest, precision_of(model), precision_difference(model, reference))
