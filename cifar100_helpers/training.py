"""Compile and fit a model within the epoch budget, with per-epoch checkpoints, resumable
backups and a CSV history that holds every epoch exactly once."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path

import keras
import tensorflow as tf

from . import data, manifest
from .config import EPOCH_BUDGET, RunConfig
from .data import Cifar100
from .errors import ConfigError, TrainingDiverged
from .hardware import Placement, scaled
from .layout import RunDir, write_atomic

HISTORY_FIELDS = (
    "epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5",
    "learning_rate", "seconds", "images_per_second",
)  # fmt: skip


def learning_rate(cfg: RunConfig, steps_per_epoch: int, peak: float | None = None):
    """Linear warm-up to ``peak`` (the config's rate unless scaled for replicas), then cosine decay
    to zero over the remaining steps; or constant."""
    peak = cfg.learning_rate if peak is None else peak
    if cfg.schedule == "constant":
        return peak
    total = cfg.epochs * steps_per_epoch
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, warmup_target=peak, warmup_steps=warmup, decay_steps=total - warmup, alpha=0.0
    )


def make_optimizer(cfg: RunConfig, steps_per_epoch: int, peak: float | None = None) -> keras.optimizers.Optimizer:
    lr = learning_rate(cfg, steps_per_epoch, peak)
    common = {"weight_decay": cfg.weight_decay or None, "use_ema": bool(cfg.ema), "ema_momentum": cfg.ema or 0.99}
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, **common)
    if cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, **common)
    else:
        optimizer = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, **common)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compile_model(
    model: keras.Model, cfg: RunConfig, steps_per_epoch: int, peak: float | None = None, jit_compile="auto"
) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch, peak),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
        ],
        jit_compile=jit_compile,
    )
    return model


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
        self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64)
        self.size = tf.Variable(cfg.start_size, trainable=False, dtype=tf.int32) if cfg.start_size else None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)
        if self.size is not None:
            self.size.assign(image_size_for_epoch(epoch, self.cfg.epochs, self.cfg.start_size, self.cfg.image_size))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss and remembers where it happened."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"epoch {self.epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True


def history_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: int(r["epoch"])))
    return out.getvalue()


def read_history(path) -> list[dict]:
    """Rows of ``history.csv`` with numbers as floats (epoch as int); [] if there is none yet."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    return [{k: (int(v) if k == "epoch" else float(v) if v else None) for k, v in row.items()} for row in rows]


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
        rows = {r["epoch"]: r for r in read_history(self.path)}
        rows[epoch + 1] = {
            **(logs or {}),
            "epoch": epoch + 1,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "seconds": round(seconds, 2),
            "images_per_second": round(self.images_per_epoch / seconds, 1),
        }
        write_atomic(self.path, history_text(list(rows.values())))


def save_model(model: keras.Model, path: Path) -> None:
    """``model.save`` under a temporary name, then an atomic rename: never a half-written file."""
    path = Path(path)
    partial = path.with_name(f"partial-{path.name}")
    model.save(partial)
    os.replace(partial, path)


class EpochCheckpoint(keras.callbacks.Callback):
    """The whole model after every epoch, replaced atomically."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, self.path)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore with crash-safe files: the weights of epoch K go to their own file
    (written under a temporary name, then renamed), and only then does the metadata, replaced
    atomically, point at them. A run killed at any instant resumes from the last complete epoch."""

    def _save_model(self):
        backup = Path(self.backup_dir)
        backup.mkdir(parents=True, exist_ok=True)
        weights = backup / f"epoch-{self._current_epoch:03d}.weights.h5"
        partial = backup / f"partial-{weights.name}"
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, weights)
        write_atomic(
            Path(self._training_metadata_path), json.dumps({"epoch": self._current_epoch, "weights": weights.name})
        )
        for old in backup.glob("epoch-*.weights.h5"):
            if old != weights:
                old.unlink()

    def _load_model(self):
        metadata = Path(self._training_metadata_path)
        if not metadata.exists():
            return
        saved = json.loads(metadata.read_text())
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(Path(self.backup_dir) / saved["weights"])
        self.model._initial_epoch = saved["epoch"]


def train(
    model: keras.Model,
    ds: Cifar100,
    cfg: RunConfig,
    run: RunDir,
    interactive: bool = True,
    strategy: tf.distribute.Strategy | None = None,
    placement: Placement | None = None,
) -> list[dict]:
    """Fit for ``cfg.epochs``; an interrupted call continues from the last finished epoch.

    The global batch is ``cfg.batch_size`` per replica times the replicas of ``strategy``, and the
    peak learning rate grows with it; both are recorded in run.json with the placement.
    """
    strategy = strategy or tf.distribute.get_strategy()
    batch, peak = scaled(cfg.batch_size, cfg.learning_rate, strategy.num_replicas_in_sync)
    steps = len(ds.train) // batch
    if steps == 0:
        raise ConfigError(
            f"global batch size {batch} exceeds the {len(ds.train)} training images (--set batch_size=...)."
        )
    with strategy.scope():
        compile_model(model, cfg, steps, peak, placement.jit_compile if placement else "auto")
    state, diverged = EpochState(cfg), StopOnNonFiniteLoss()
    callbacks = [
        AtomicBackupAndRestore(str(run.backup), delete_checkpoint=False),  # a resume after training must not retrain
        state,
        diverged,
        EpochRecorder(run.history, steps * batch),
        EpochCheckpoint(run.checkpoint),
    ]
    manifest.write(
        run.manifest,
        training={
            "replicas": strategy.num_replicas_in_sync,
            "global_batch_size": batch,
            "peak_learning_rate": peak,
            **(placement.to_dict() if placement else {}),
        },
    )
    model.fit(
        data.train_dataset(ds.train, batch, cfg, state.size, state.epoch),
        epochs=cfg.epochs,
        validation_data=data.eval_dataset(ds.val, 500) if len(ds.val) else None,
        callbacks=callbacks,
        shuffle=False,  # tf.data already shuffles, with a seed
        verbose=1 if interactive else 2,
    )
    if diverged.where:
        raise TrainingDiverged(
            f"The loss became NaN or infinite at {diverged.where}; the run is marked failed. "
            f"Lower the learning rate (now {peak:g}: --set learning_rate=...) or check the data."
        )
    save_model(model, run.model)
    return read_history(run.history)


def budget_statement(history: list[dict], cfg: RunConfig) -> str:
    used = len(history)
    if cfg.over_budget:
        return f"OVER BUDGET: {used} epochs trained, above the study's {EPOCH_BUDGET}-epoch rule (allowed explicitly)."
    minutes = sum(r["seconds"] for r in history) / 60
    return f"{used} of the {EPOCH_BUDGET}-epoch budget used ({minutes:.1f} min of training)."
