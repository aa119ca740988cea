"""Per-step cost of the training callbacks before and after they moved their per-step work into the compiled step
(commit 5ec47b6 is "before"), side by side in one process: ms per train step of a fixed small model with no
callbacks, with the callbacks as they were (weight EMA updated from Python after every step, NaN check reading the
loss every step) and as they are (EMA inside the train step, NaN check every 50 steps); TensorBoard in both.
Rounds alternate, medians are reported. Models: ``scratch``'s family at a small width (few variables) and
EfficientNetV2-B0 without weights at 32 px (~300 weight tensors, like ``transfer``'s backbone).

Usage: python -m tests.measure_callback_overhead   (prints one JSON line per model; docs/hardware.md quotes it)"""

import json
import statistics
import subprocess
import tempfile
import time
import types

import keras
import numpy as np
import tensorflow as tf

from cifar100_helpers import config, models, training

BEFORE = "5ec47b6"


def old_callbacks() -> types.ModuleType:
    """WeightEMA and StopOnNonFiniteLoss as they were at BEFORE, read from git."""
    source = subprocess.run(["git", "show", f"{BEFORE}:cifar100_helpers/training.py"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    classes = [source[source.index(f"class {name}") :] for name in ("StopOnNonFiniteLoss", "WeightEMA")]
    classes = [c[: c.index("\nclass ", 1)] for c in classes]
    module = types.ModuleType("before")
    exec("import math\nimport keras\nimport numpy as np\nimport tensorflow as tf\n" + "\n".join(classes), vars(module))
    return module


def model_for(kind: str) -> keras.Model:
    if kind == "scratch":
        return models.build(config.make_config("smoke", widths=(32, 64, 128)))
    inputs = keras.Input((32, 32, 3))
    backbone = keras.applications.EfficientNetV2B0(weights=None, include_top=False, input_shape=(32, 32, 3),
                                                   pooling="avg")  # fmt: skip
    return keras.Model(inputs, keras.layers.Dense(100, activation="softmax")(backbone(inputs)))


def ms_per_step(kind: str, which: str, before, steps: int, batch: int, folder: str) -> float:
    keras.utils.set_random_seed(0)
    model = model_for(kind)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="categorical_crossentropy")
    momentum = {"scratch": 0.99, "transfer": 0.999}[kind]
    callbacks = {
        "none": [],
        "before": [before.WeightEMA(model, momentum), before.StopOnNonFiniteLoss()],
        "after": [training.WeightEMA(model, momentum), training.StopOnNonFiniteLoss()],
    }[which]
    callbacks += [keras.callbacks.TensorBoard(folder)] if callbacks else []
    x = np.random.default_rng(0).integers(0, 255, (batch * steps, 32, 32, 3)).astype("float32")
    y = np.eye(100, dtype="float32")[np.arange(batch * steps) % 100]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    model.fit(data.take(3), epochs=1, verbose=0, callbacks=callbacks)  # tracing and compilation
    started = time.perf_counter()
    model.fit(data, epochs=1, verbose=0, callbacks=callbacks)
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    before = old_callbacks()
    with tempfile.TemporaryDirectory() as tmp:
        for kind, steps, batch in (("scratch", 60, 64), ("transfer", 30, 32)):
            times = {which: [] for which in ("none", "before", "after")}
            for round_ in range(3):
                for which in times:
                    times[which].append(ms_per_step(kind, which, before, steps, batch, f"{tmp}/{kind}{which}{round_}"))
            median = {which: statistics.median(t) for which, t in times.items()}
            overhead = {which: round(median[which] - median["none"], 2) for which in ("before", "after")}
            print(json.dumps({"model": kind, "batch": batch, "steps": steps, "callback_overhead_ms": overhead,
                              "ms_per_step": {w: round(m, 2) for w, m in median.items()},
                              "rounds": {w: [round(t, 1) for t in v] for w, v in times.items()}}),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
