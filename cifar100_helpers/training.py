"""Compile and fit a model within the epoch budget, with per-epoch checkpoints, resumable
backups and a CSV history that holds every epoch exactly once."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import input_pipeline
from .config import EPOCH_BUDGET, SIZES, RunConfig
from .data import Cifar100
from .errors import ConfigError, RunError, TrainingDiverged
from .hardware import Placement, scale
from .models import precision_of
from .muon import MuonConvSGD
from .running import manifest
from .running.files import replacing, write_atomic
from .running.history import history_text, read_history
from .running.progress import append, epoch_line
from .running.run_dir import RunDir
from .sgd import BiasScaledSGD

MIN_WARMUP_STEPS = 50  # a warm-up shorter than this is lengthened: few, large steps need it most


def learning_rate(cfg: RunConfig, steps_per_epoch: int, peak: float | None = None):
    """Linear warm-up to ``peak`` (the config's rate unless scaled for replicas) over
    ``cfg.warmup_epochs`` but at least MIN_WARMUP_STEPS steps (at most half the run), then cosine
    decay to zero over the remaining steps; or constant."""
    peak = cfg.learning_rate if peak is None else peak
    if cfg.schedule == "constant":
        return peak
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if warmup:
        warmup = max(warmup, min(MIN_WARMUP_STEPS, total // 2))
    warmup = min(warmup, total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, warmup_target=peak, warmup_steps=warmup, decay_steps=total - warmup, alpha=0.0
    )


def make_optimizer(cfg: RunConfig, steps_per_epoch: int, peak: float | None = None) -> keras.optimizers.Optimizer:
    lr, decay = learning_rate(cfg, steps_per_epoch, peak), cfg.weight_decay or None
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, weight_decay=decay)
    if cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "muon":
        ratio = cfg.muon_learning_rate / cfg.learning_rate
        optimizer = MuonConvSGD(
            lr, muon_ratio=ratio, bias_lr_scale=cfg.bias_lr_scale, momentum=cfg.momentum, weight_decay=decay
        )
    elif cfg.bias_lr_scale != 1:
        optimizer = BiasScaledSGD(lr, bias_lr_scale=cfg.bias_lr_scale, momentum=cfg.momentum, weight_decay=decay)
    else:
        optimizer = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, weight_decay=decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compile_model(
    model: keras.Model,
    cfg: RunConfig,
    steps_per_epoch: int,
    peak: float | None = None,
    jit_compile="auto",
    steps_per_execution: int = 1,
) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch, peak),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
        ],
        jit_compile=jit_compile,
        steps_per_execution=max(1, min(steps_per_execution, steps_per_epoch)),
    )
    return model


def check_precision(model: keras.Model, placement: Placement | None, path) -> None:
    """Refuse to train a model built under another dtype policy than this runtime's (a float16 model on a TPU would
    train without loss scaling, a float32 one under a pointless loss scale). Notebook 03 loads 02's model with
    ``models.load(path, precision=placement.precision)``, which rebuilds it under this runtime's policy."""
    built = precision_of(model)
    if placement and built != placement.precision:
        raise RunError(
            f"{path} was built in {built} but this runtime trains in {placement.precision} ({placement.kind}): "
            f"load it with models.load(path, precision={placement.precision!r}), as notebook 03 does, to rebuild "
            "it under this runtime's precision with the same weights."
        )


def image_size_for_epoch(epoch: int, epochs: int, start: int, end: int, step: int = 4) -> int:
    """Progressive resizing: sizes start, start+step, ..., end, each for an equal share of the epochs
    (epoch is 0-based); ``start`` 0 means always ``end``."""
    if not start:
        return end
    sizes = list(range(start, end, step)) + [end]
    return sizes[min(len(sizes) - 1, epoch * len(sizes) // epochs)]


class EpochState(keras.callbacks.Callback):
    """Tells the input pipeline which epoch starts (its data order and augmentations depend on it)
    and, with progressive resizing, which image size to produce."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        with tf.device("/CPU:0"):  # read by tf.data on the host every batch: kept there
            self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64)
            self.size = tf.Variable(cfg.start_size, trainable=False, dtype=tf.int32) if cfg.start_size else None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)
        if self.size is not None:
            self.size.assign(image_size_for_epoch(epoch, self.cfg.epochs, self.cfg.start_size, self.cfg.image_size))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training once the loss is NaN or infinite and remembers where. It reads the epoch's running loss
    every ``every`` batches and at the end of each epoch, not after every step, and names the range of batches
    in which the loss went bad. (Keras's TensorFlow trainer itself reads the logs back once per call of its train
    function: every step, or every ``steps_per_execution`` steps, as on a TPU; this check adds no read of its own.)"""

    def __init__(self, every: int = 50):
        super().__init__()
        self.every, self.epoch, self.checked = every, 0, 0
        self.where: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.checked = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 - self.checked >= self.every:
            self.check(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.where is None:
            self.check(self.params.get("steps") or self.checked + 1, logs)

    def check(self, batches: int, logs) -> None:
        loss = (logs or {}).get("loss")  # the running mean: once a step's loss is NaN, it stays NaN
        if loss is not None and not math.isfinite(float(loss)):
            first = self.checked + 1
            span = f"batch {batches}" if first >= batches else f"batches {first}-{batches}"
            self.where = f"epoch {self.epoch + 1}, {span}"
            self.model.stop_training = True
        self.checked = batches


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch to ``path`` (and to the notebook's output when ``echo``): epoch k/N,
    loss, accuracy, validation accuracy, seconds, images/second and the ETA of the remaining epochs
    (their mean time in this attempt)."""

    def __init__(self, path: Path, epochs: int, images_per_epoch: int, echo: bool, minutes: float = 0.0):
        super().__init__()
        self.path, self.epochs, self.images, self.echo = Path(path), epochs, images_per_epoch, echo
        self.minutes = minutes  # the run's training budget: after its first epoch, a line if the pace overruns it
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        self.times.append(seconds)
        eta = sum(self.times) / len(self.times) * (self.epochs - epoch - 1)
        lines = [epoch_line(epoch + 1, self.epochs, logs or {}, seconds, self.images / seconds, eta)]
        projected = (sum(self.times) + eta) / 60  # this attempt's pace (the first epoch's tracing included)
        if self.minutes and epoch == 0 and projected > self.minutes:
            lines.append(f"at this pace the {self.epochs} epochs take about {projected:.0f} min, over the "
                         f"{self.minutes:g}-minute budget: choose a smaller --size for the next run")  # fmt: skip
        for line in lines:
            append(self.path, line)
            if self.echo:
                print(line, flush=True)


class EpochRecorder(keras.callbacks.Callback):
    """Times each epoch and rewrites ``history.csv`` atomically, one row per epoch (1-based)."""

    def __init__(self, path, images_per_epoch: int):
        super().__init__()
        self.path = path
        self.images_per_epoch = images_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        measured = {
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "seconds": round(seconds, 2),
            "images_per_second": round(self.images_per_epoch / seconds, 1),
        }
        if logs is not None:
            logs.update(measured)  # the callbacks after this one (TensorBoard) log them too
        rows = {r["epoch"]: r for r in read_history(self.path)}
        rows[epoch + 1] = {**(logs or {}), **measured, "epoch": epoch + 1}
        write_atomic(self.path, history_text(list(rows.values())))


def save_model(model: keras.Model, path: Path) -> None:
    """``model.save`` under a temporary name, then an atomic rename: never a half-written file."""
    with replacing(path) as partial:
        model.save(partial)


class WeightEMA(keras.callbacks.Callback):
    """An exponential moving average of all the model's weights, BatchNorm statistics included (so
    the statistics belong to the averaged weights), updated after every step.

    The momentum warms up: at step t it is ``min(momentum, (1 + t) / (10 + t))``, so the average
    forgets the first steps' weights whatever the step count (a plain 0.999 average over a few
    hundred steps would still be mostly the step-1 weights). Validation runs on the average, so
    history.csv shows the model that is saved; training ends with the average in the model.

    The update is part of the compiled train step (the model's ``train_step`` is wrapped): no Python and no
    device-to-host copy per step, and under a ``tf.distribute`` strategy each replica keeps its own copy of the
    average (its weights are the same on every replica), so nothing crosses between devices per step. Create it
    inside the strategy's scope, before the first ``fit``."""

    def __init__(self, model: keras.Model, momentum: float):
        super().__init__()
        self.momentum = momentum
        self.weights = [w for w in model.weights if w.dtype.startswith("float")]
        local = {"trainable": False, "synchronization": tf.VariableSynchronization.ON_READ,
                 "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA}  # fmt: skip
        self.average = [tf.Variable(w.value, **local) for w in self.weights]
        self.step = tf.Variable(0, dtype=tf.int64, **local)
        train_step = model.train_step

        def train_step_with_average(data):
            logs = train_step(data)
            self.update()
            return logs

        model.train_step = train_step_with_average

    def update(self):
        """One step of the average, traced into the train step (replica context under a strategy)."""
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float32)
        decay = tf.minimum(self.momentum, (1.0 + t) / (10.0 + t))
        for average, weight in zip(self.average, self.weights, strict=True):
            average.assign(decay * average + (1.0 - decay) * tf.cast(weight.value, average.dtype))

    @tf.function
    def swap(self):
        for average, weight in zip(self.average, self.weights, strict=True):
            raw = tf.identity(weight.value)
            weight.assign(average.read_value())
            average.assign(raw)

    def state(self) -> dict[str, np.ndarray]:
        return {"step": self.step.numpy(), **{f"w{i}": a.numpy() for i, a in enumerate(self.average)}}

    def load_state(self, state) -> None:
        self.step.assign(state["step"])
        for i, average in enumerate(self.average):
            average.assign(state[f"w{i}"])

    def on_test_begin(self, logs=None):
        self.swap()

    def on_test_end(self, logs=None):
        self.swap()

    def on_train_end(self, logs=None):
        for average, weight in zip(self.average, self.weights, strict=True):
            weight.assign(average.read_value())


class Backup(keras.callbacks.Callback):
    """The resume state, the one save of every epoch, crash-safe and with public Keras calls only: the model's
    and optimizer's weights (and the weight EMA) are written into one of two slots, the one ``state.json`` does not
    point at, and only then does ``state.json``, replaced atomically, point at it. The slots are overwritten in
    place, never deleted: on Google Drive's mount a replaced or deleted file goes to Drive's trash and counts
    against its quota, so a run keeps two copies there, whatever its length. :meth:`restore` before
    ``fit(initial_epoch=...)`` continues from the last finished epoch.

    ``state.json`` also records how the run trains (``shape``: steps per epoch, global batch, replicas, precision)
    and the optimizer's step count at that epoch. A resume on other hardware that would change the schedule is
    refused; a slot that does not hold the step count state.json names (Drive uploads in the background, not in
    write order, so after a disconnect state.json can be newer than its slot) falls back to the other slot when
    that one holds the epoch before, else stops with one line."""

    SLOTS = ("a", "b")
    WEIGHTS = tuple(f"slot-{slot}.weights.h5" for slot in SLOTS)  # what state.json may name (no other path)
    SCHEDULE = ("steps_per_epoch", "global_batch")  # a change moves the learning-rate schedule: refused

    def __init__(self, folder: Path, ema: WeightEMA | None = None, shape: dict | None = None):
        super().__init__()
        self.folder, self.ema, self.shape = Path(folder), ema, shape or {}
        self.state = self.folder / "state.json"
        self.slot = self.SLOTS[0]  # the slot the next epoch writes

    def restore(self, model: keras.Model) -> int:
        """Load the last finished epoch's state into ``model`` (compiled); the epochs finished."""
        if not self.state.exists():
            return 0
        saved = self.read_state()
        self.check_shape(saved)
        model.optimizer.build(model.trainable_variables)
        epoch, slot = int(saved["epoch"]), saved["weights"].split(".")[0].removeprefix("slot-")
        steps = self.load_slot(model, slot, saved)
        if epoch and steps == 0:
            raise RunError(
                f"The optimizer's state in {self.folder / saved['weights']} did not load (Keras skipped its "
                "variables: it was saved under another optimizer or loss scaling than this runtime's "
                f"{keras.mixed_precision.global_policy().name}), so the learning-rate schedule would restart from "
                f"step 0: resume on the hardware that trained epochs 1-{epoch}, or start a fresh run with --output "
                "NAME."
            )
        elif "iterations" in saved and steps != saved["iterations"]:  # a stale slot: the other one may hold epoch-1
            epoch, slot = self.fall_back(model, saved, slot, steps)
        self.slot = self.SLOTS[1] if slot == self.SLOTS[0] else self.SLOTS[0]
        return epoch

    def fall_back(self, model: keras.Model, saved: dict, slot: str, steps: int) -> tuple[int, str]:
        """The slot state.json names is stale: continue from the other slot if it holds the epoch before."""
        epoch, other = int(saved["epoch"]), self.SLOTS[1] if slot == self.SLOTS[0] else self.SLOTS[0]
        stale = (
            f"{self.folder / saved['weights']} holds step {steps}, not the step {saved['iterations']} of epoch "
            f"{epoch} that {self.state} names"
        )
        if epoch < 2 or not (self.folder / f"slot-{other}.weights.h5").exists():
            raise RunError(f"{stale} (an incomplete upload or copy): {self.fresh_start()}")
        if self.load_slot(model, other, saved) != saved["iterations"] - saved["steps_per_epoch"]:
            raise RunError(f"{stale}, and the other slot does not hold epoch {epoch - 1}: {self.fresh_start()}")
        print(f"{stale}: continuing from epoch {epoch - 1} in the other slot (epoch {epoch} is trained again).")
        return epoch - 1, other

    def fresh_start(self) -> str:
        return (
            f"delete {self.folder} and history.csv to train this run again from epoch 1 (then --resume it), or "
            "start a fresh run with --output NAME."
        )

    def read_state(self) -> dict:
        try:
            saved = json.loads(self.state.read_text())
            counts = [saved["epoch"], *(saved[k] for k in ("iterations", "steps_per_epoch") if k in saved)]
            if not (all(type(n) is int and n >= 0 for n in counts) and saved["weights"] in self.WEIGHTS):
                raise ValueError("unexpected epoch, step count or weights entry")
            return saved
        except Exception as exc:  # garbage JSON, a missing key, an unreadable file: the way forward is the same
            raise RunError(f"The resume state {self.state} is damaged ({brief(exc)}): {self.fresh_start()}") from None

    def check_shape(self, saved: dict) -> None:
        """Refuse a resume that would change the schedule (another global batch or steps per epoch: another number
        of replicas, a TPU v2-8 then a v5e-1, two GPUs then one)."""
        changed = [k for k in self.SCHEDULE if k in saved and k in self.shape and saved[k] != self.shape[k]]
        if changed:
            was = ", ".join(f"{k.replace('_', ' ')} {saved[k]}" for k in changed)
            now = ", ".join(f"{self.shape[k]}" for k in changed)
            raise RunError(
                f"Epochs 1-{saved['epoch']} of this run trained with {saved.get('replicas', '?')} replica(s) ({was}); "
                f"this runtime has {self.shape.get('replicas', '?')} ({now}), so the learning-rate schedule would no "
                "longer end at zero: resume on hardware with as many devices (a GPU or TPU runtime of the same kind), "
                "or start a fresh run with --output NAME."
            )

    def load_slot(self, model: keras.Model, slot: str, saved: dict) -> int:
        """Load one slot's weights (and EMA) into ``model``; the optimizer's step count it held."""
        path = self.folder / f"slot-{slot}.weights.h5"
        try:
            model.load_weights(path)
            if self.ema is not None:
                path = self.folder / f"slot-{slot}.ema.npz"
                with np.load(path) as ema:
                    self.ema.load_state(ema)
        except Exception as exc:  # truncated HDF5, a missing file: the way forward is the same
            raise RunError(f"The resume state {path} is damaged ({brief(exc)}): {self.fresh_start()}") from None
        return int(keras.ops.convert_to_numpy(model.optimizer.iterations))

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        files = {"weights": f"slot-{self.slot}.weights.h5"}
        self.model.save_weights(self.folder / files["weights"], overwrite=True)
        if self.ema is not None:
            files["ema"] = f"slot-{self.slot}.ema.npz"
            with open(self.folder / files["ema"], "wb") as out:  # in place, like the weights
                np.savez(out, **self.ema.state())
        steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        write_atomic(self.state, json.dumps({"epoch": epoch + 1, **files, "iterations": steps, **self.shape}))
        self.slot = self.SLOTS[1] if self.slot == self.SLOTS[0] else self.SLOTS[0]


def brief(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


@dataclass(frozen=True)
class Fit:
    """Everything ``model.fit`` needs for one run, made by :func:`prepare`: the input pipelines, the epoch to
    start from (after a kill, the first one not finished) and the callbacks by name, in the order they run."""

    train_data: tf.data.Dataset
    val_data: tf.data.Dataset | None
    initial_epoch: int
    steps_per_epoch: int
    global_batch: int
    peak_learning_rate: float
    callbacks: dict[str, keras.callbacks.Callback]


def prepare(
    model: keras.Model,
    ds: Cifar100,
    cfg: RunConfig,
    run: RunDir,
    interactive: bool = True,
    strategy: tf.distribute.Strategy | None = None,
    placement: Placement | None = None,
) -> Fit:
    """Compile ``model`` (optimizer, loss, metrics) and load a killed run's last finished epoch, then make the
    input pipelines and callbacks of :class:`Fit`. The batch and peak learning rate follow the replicas of
    ``strategy`` (:func:`hardware.scale`); they, the images left out of each epoch by the last partial batch,
    and the placement are recorded in run.json."""
    strategy = strategy or tf.distribute.get_strategy()
    scaling = scale(cfg, strategy.num_replicas_in_sync)
    batch = scaling.global_batch
    steps = len(ds.train) // batch
    if steps == 0:
        raise ConfigError(
            f"global batch size {batch} exceeds the {len(ds.train)} training images (--set batch_size=...)."
        )
    check_precision(model, placement, run.untrained_model)
    jit, per_call = (placement.jit_compile, placement.steps_per_execution) if placement else ("auto", 1)
    with strategy.scope():
        compile_model(model, cfg, steps, scaling.peak_learning_rate, jit, per_call)
        ema = WeightEMA(model, cfg.ema) if cfg.ema else None
        shape = {"steps_per_epoch": steps, "global_batch": batch, "replicas": strategy.num_replicas_in_sync,
                 "precision": precision_of(model)}  # fmt: skip
        backup = Backup(run.backup, ema, shape)
        finished = backup.restore(model)
    recorded = len(read_history(run.history))
    if recorded > finished + 1:  # one more is a kill between the history row and the backup: retrained
        raise RunError(
            f"history.csv records {recorded} epoch(s) but the resume state ({backup.state}) only {finished}: "
            f"it was deleted or replaced. Start a fresh run with --output NAME (or delete history.csv to retrain "
            "this one from the resume state)."
        )
    state = EpochState(cfg)
    callbacks = {
        **({"ema": ema} if ema else {}),  # first: validation sees the average
        "epoch_state": state,
        "stop_on_nan": StopOnNonFiniteLoss(),
        "history": EpochRecorder(run.history, steps * batch),
        "tensorboard": keras.callbacks.TensorBoard(run.tensorboard),  # per-epoch metrics, learning rate, images/s
        "progress": EpochProgress(run.progress, cfg.epochs, steps * batch, not interactive, cfg.minutes),
        "backup": backup,  # last: an epoch counts as finished only once its history row is written
    }
    manifest.write(
        run.manifest,
        training={
            "replicas": strategy.num_replicas_in_sync,
            **scaling.to_dict(),
            "steps_per_epoch": steps,
            "images_left_out_per_epoch": len(ds.train) - steps * batch,  # a different few each epoch
            "ema": {"momentum": cfg.ema, "warmup": "min(momentum, (1 + t) / (10 + t))"} if cfg.ema else None,
            **(placement.to_dict() if placement else {}),
            "precision": precision_of(model),  # what the model computes in, as built (placement chose it)
        },
    )
    return Fit(
        train_data=input_pipeline.train_dataset(ds.train, batch, cfg, state.size, state.epoch),
        val_data=input_pipeline.eval_dataset(ds.val, 500) if len(ds.val) else None,
        initial_epoch=finished,
        steps_per_epoch=steps,
        global_batch=batch,
        peak_learning_rate=scaling.peak_learning_rate,
        callbacks=callbacks,
    )


def finish(model: keras.Model, fit: Fit, run: RunDir) -> list[dict]:
    """After ``model.fit``: stop with one line if the loss diverged, else save ``model.keras``; the history."""
    diverged = fit.callbacks["stop_on_nan"].where
    if diverged:
        raise TrainingDiverged(
            f"The loss became NaN or infinite at {diverged}; the run is marked failed. Lower the learning rate "
            f"(now {fit.peak_learning_rate:g}: --set learning_rate=...) or check the data."
        )
    save_model(model, run.model)
    return read_history(run.history)


def train(
    model: keras.Model,
    ds: Cifar100,
    cfg: RunConfig,
    run: RunDir,
    interactive: bool = True,
    strategy: tf.distribute.Strategy | None = None,
    placement: Placement | None = None,
) -> list[dict]:
    """:func:`prepare`, ``model.fit`` for ``cfg.epochs`` (an interrupted run continues from its last finished
    epoch), :func:`finish`: what notebook 03 shows step by step."""
    fit = prepare(model, ds, cfg, run, interactive, strategy, placement)
    model.fit(
        fit.train_data,
        epochs=cfg.epochs,
        initial_epoch=fit.initial_epoch,
        validation_data=fit.val_data,
        callbacks=list(fit.callbacks.values()),
        shuffle=False,  # tf.data already shuffles, with a seed
        verbose=1 if interactive else 0,  # a progress bar interactively; else EpochProgress's one line an epoch
    )
    return finish(model, fit, run)


def describe_optimizer(model: keras.Model) -> str:
    """The compiled optimizer, its settings and the loss, one per line (what notebook 03 prints)."""
    optimizer, loss = model.optimizer, model.loss
    shown = {k: v for k, v in optimizer.get_config().items() if k not in ("name", "learning_rate") and v is not None}
    shown = {k: v for k, v in shown.items() if v is not False or k == "nesterov"}
    if not shown.pop("use_ema", False):  # Keras's own weight average, off: its settings mean nothing
        shown = {k: v for k, v in shown.items() if not k.startswith("ema_")}
    settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(shown.items()))
    loss_settings = {k: v for k, v in loss.get_config().items() if k in ("label_smoothing", "from_logits")}
    return f"optimizer: {type(optimizer).__name__}({settings})\nloss: {type(loss).__name__}({loss_settings})"


def schedule_curve(cfg: RunConfig, fit: Fit, points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """The learning rate the run's optimizer follows (:func:`learning_rate`, as compiled), at ``points``
    steps spread over the whole run: (steps, rates)."""
    schedule = learning_rate(cfg, fit.steps_per_epoch, fit.peak_learning_rate)
    steps = np.unique(np.linspace(0, cfg.epochs * fit.steps_per_epoch - 1, points).astype(int))
    if not callable(schedule):
        return steps, np.full(len(steps), float(schedule))
    return steps, np.array([float(keras.ops.convert_to_numpy(schedule(step))) for step in steps])


def budget_statement(history: list[dict], cfg: RunConfig) -> str:
    used = len(history)
    if cfg.over_budget:
        return f"OVER BUDGET: {used} epochs trained, above the study's {EPOCH_BUDGET}-epoch rule (allowed explicitly)."
    minutes = sum(r["seconds"] for r in history) / 60
    size = f", size {cfg.size}" if cfg.size in SIZES else ""  # "auto": a notebook by hand trains the recipe's widths
    time_budget = f" of a {cfg.minutes:g}-minute budget{size}" if cfg.minutes else size
    return f"{used} of the {EPOCH_BUDGET}-epoch budget used ({minutes:.1f} min of training{time_budget})."
