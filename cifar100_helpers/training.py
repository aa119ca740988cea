"""Compile and fit a model within the epoch budget, with per-epoch checkpoints, resumable
backups and a CSV history that holds every epoch exactly once."""

from __future__ import annotations

import csv
import io
import time

import keras

from . import data
from .config import EPOCH_BUDGET, RunConfig
from .data import Cifar100
from .layout import RunDir, write_atomic

HISTORY_FIELDS = (
    "epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5",
    "learning_rate", "seconds", "images_per_second",
)  # fmt: skip


def learning_rate(cfg: RunConfig, steps_per_epoch: int):
    """Linear warm-up to the peak, then cosine decay to zero over the remaining steps; or constant."""
    if cfg.schedule == "constant":
        return cfg.learning_rate
    total = cfg.epochs * steps_per_epoch
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=total - warmup,
        alpha=0.0,
    )


def make_optimizer(cfg: RunConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = learning_rate(cfg, steps_per_epoch)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, weight_decay=cfg.weight_decay or None)
    optimizer = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay or None)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compile_model(model: keras.Model, cfg: RunConfig, steps_per_epoch: int) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
        ],
        jit_compile="auto",
    )
    return model


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


def train(model: keras.Model, ds: Cifar100, cfg: RunConfig, run: RunDir, interactive: bool = True) -> list[dict]:
    """Fit for ``cfg.epochs``; an interrupted call continues from the last finished epoch."""
    steps = len(ds.train) // cfg.batch_size
    if steps == 0:
        from .errors import ConfigError

        raise ConfigError(f"batch size {cfg.batch_size} exceeds the {len(ds.train)} training images (--batch-size).")
    compile_model(model, cfg, steps)
    train_ds = data.train_dataset(ds.train, cfg.batch_size, cfg.seed, cfg.crop_pad, cfg.flip)
    val_ds = data.eval_dataset(ds.val, 500) if len(ds.val) else None
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run.backup)),
        EpochRecorder(run.history, steps * cfg.batch_size),
        keras.callbacks.ModelCheckpoint(str(run.checkpoint)),
        keras.callbacks.TerminateOnNaN(),
    ]
    model.fit(
        train_ds,
        epochs=cfg.epochs,
        validation_data=val_ds,
        callbacks=callbacks,
        shuffle=False,  # tf.data already shuffles, with a seed
        verbose=1 if interactive else 2,
    )
    model.save(run.model)
    return read_history(run.history)


def budget_statement(history: list[dict], cfg: RunConfig) -> str:
    used = len(history)
    if cfg.over_budget:
        return f"OVER BUDGET: {used} epochs trained, above the study's {EPOCH_BUDGET}-epoch rule (allowed explicitly)."
    minutes = sum(r["seconds"] for r in history) / 60
    return f"{used} of the {EPOCH_BUDGET}-epoch budget used ({minutes:.1f} min of training)."
