"""Training within the epoch budget: the optimizer, loss and learning-rate schedule, the compiled model, the input
pipelines and the callbacks that belong to the learning itself (the epoch's data order, the weight average, the NaN
check). What a run keeps on disk each epoch (history, progress, the resume state) is :mod:`.running.epoch_files`,
which adds its callbacks to the :class:`Fit` made here."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from . import input_pipeline
from .config import EPOCH_BUDGET, SIZES, RunConfig
from .data import Cifar100
from .distribute import Placement, scale
from .errors import ConfigError, RunError, TrainingDiverged
from .models import precision_of

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
    """The recipe's optimizer on :func:`learning_rate`'s schedule. Keras's ``weight_decay`` is decoupled (AdamW's
    form, for every optimizer): each step shrinks every weight by learning rate x weight decay, apart from the
    gradient, so it is not PyTorch's SGD ``weight_decay`` (a term of the gradient, which momentum 0.9 amplifies about
    tenfold); BatchNorm's scale and shift and the biases are not decayed."""
    lr, decay = learning_rate(cfg, steps_per_epoch, peak), cfg.weight_decay or None
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, weight_decay=decay)
    if cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
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


def check_precision(model: keras.Model, placement: Placement | None) -> None:
    """Refuse to train a model built under another dtype policy than this runtime's (a float16 model on a TPU would
    train without loss scaling, a float32 one under a pointless loss scale). Notebook 03 loads 02's model with
    ``models.load(path, precision=placement.precision)``, which rebuilds it under this runtime's policy."""
    built = precision_of(model)
    if placement and built != placement.precision:
        raise RunError(
            f"model {model.name} was built in {built} but this runtime trains in {placement.precision} "
            f"({placement.kind}): "
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


@dataclass(frozen=True)
class Fit:
    """Everything ``model.fit`` needs for one run, made by :func:`prepare`: the input pipelines, the epoch to
    start from (after a kill, the first one not finished: :func:`.running.epoch_files.attach`) and the callbacks
    by name, in the order they run; ``summary`` is what run.json records about the training's shape."""

    train_data: tf.data.Dataset
    val_data: tf.data.Dataset | None
    initial_epoch: int
    steps_per_epoch: int
    global_batch: int
    peak_learning_rate: float
    callbacks: dict[str, keras.callbacks.Callback]
    strategy: tf.distribute.Strategy
    summary: dict = field(default_factory=dict)

    @property
    def shape(self) -> dict:
        """How the run trains: a resume must keep it (another steps per epoch or global batch moves the schedule)."""
        keys = ("steps_per_epoch", "global_batch", "replicas", "precision")
        return {k: self.summary[k] for k in keys}


def prepare(
    model: keras.Model,
    ds: Cifar100,
    cfg: RunConfig,
    strategy: tf.distribute.Strategy | None = None,
    placement: Placement | None = None,
) -> Fit:
    """Compile ``model`` (:func:`compile_model`: optimizer, loss, metrics), then make the input pipelines and the
    learning's callbacks (weight average, epoch state, NaN check) of :class:`Fit`. The batch and peak learning rate
    follow the replicas of ``strategy`` (:func:`distribute.scale`)."""
    strategy = strategy or tf.distribute.get_strategy()
    scaling = scale(cfg, strategy.num_replicas_in_sync)
    batch = scaling.global_batch
    steps = len(ds.train) // batch
    if steps == 0:
        raise ConfigError(
            f"global batch size {batch} exceeds the {len(ds.train)} training images (--set batch_size=...)."
        )
    check_precision(model, placement)
    jit, per_call = (placement.jit_compile, placement.steps_per_execution) if placement else ("auto", 1)
    with strategy.scope():
        compile_model(model, cfg, steps, scaling.peak_learning_rate, jit, per_call)
        ema = WeightEMA(model, cfg.ema) if cfg.ema else None
    state = EpochState(cfg)
    callbacks = {
        **({"ema": ema} if ema else {}),  # first: validation sees the average
        "epoch_state": state,
        "stop_on_nan": StopOnNonFiniteLoss(),
    }
    summary = {
        "replicas": strategy.num_replicas_in_sync,
        **scaling.to_dict(),
        "steps_per_epoch": steps,
        "images_left_out_per_epoch": len(ds.train) - steps * batch,  # a different few each epoch
        "ema": {"momentum": cfg.ema, "warmup": "min(momentum, (1 + t) / (10 + t))"} if cfg.ema else None,
        **(placement.to_dict() if placement else {}),
        "precision": precision_of(model),  # what the model computes in, as built (placement chose it)
    }
    return Fit(
        train_data=input_pipeline.train_dataset(ds.train, batch, cfg, state.size, state.epoch),
        val_data=input_pipeline.eval_dataset(ds.val, 500) if len(ds.val) else None,
        initial_epoch=0,
        steps_per_epoch=steps,
        global_batch=batch,
        peak_learning_rate=scaling.peak_learning_rate,
        callbacks=callbacks,
        strategy=strategy,
        summary=summary,
    )


def check_finite(fit: Fit) -> None:
    """After ``model.fit``: stop with one line if the loss became NaN or infinite."""
    diverged = fit.callbacks["stop_on_nan"].where
    if diverged:
        raise TrainingDiverged(
            f"The loss became NaN or infinite at {diverged}; the run is marked failed. Lower the learning rate "
            f"(now {fit.peak_learning_rate:g}: --set learning_rate=...) or check the data."
        )


def optimizer_source() -> str:
    """The Python source that builds the schedule, the optimizer, the loss and the compiled model (what notebook 03
    shows)."""
    return "\n\n".join(inspect.getsource(f) for f in (learning_rate, make_optimizer, compile_model))


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
