"""What training leaves in the run directory, epoch by epoch: a row of ``history.csv``, a line of ``progress.log``,
TensorBoard's logs and the resume state (the one save of every epoch); then ``model.keras``. :func:`attach` adds
these callbacks to :func:`training.prepare`'s :class:`~cifar100_helpers.training.Fit` and continues a killed run
from its last finished epoch; :func:`train` is prepare, attach, ``model.fit`` and :func:`finish` in one call."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .. import training
from ..config import RunConfig
from ..data import Cifar100
from ..distribute import Placement
from ..errors import RunError
from ..files import replacing, write_atomic
from ..training import Fit, WeightEMA
from . import manifest
from .history import history_text, read_history
from .progress import append, epoch_line
from .run_dir import RunDir


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


def attach(fit: Fit, model: keras.Model, cfg: RunConfig, run: RunDir, interactive: bool = True) -> Fit:
    """``fit`` with the run directory's callbacks after the learning's own (backup last: an epoch counts as finished
    only once its history row is written) and, after a kill, the last finished epoch loaded into ``model``
    (weights, optimizer, weight average) to start from; the training's shape goes to run.json."""
    images = fit.steps_per_epoch * fit.global_batch
    backup = Backup(run.backup, fit.callbacks.get("ema"), fit.shape)
    with fit.strategy.scope():
        finished = backup.restore(model)
    recorded = len(read_history(run.history))
    if recorded > finished + 1:  # one more is a kill between the history row and the backup: retrained
        raise RunError(
            f"history.csv records {recorded} epoch(s) but the resume state ({backup.state}) only {finished}: "
            f"it was deleted or replaced. Start a fresh run with --output NAME (or delete history.csv to retrain "
            "this one from the resume state)."
        )
    callbacks = {
        **fit.callbacks,
        "history": EpochRecorder(run.history, images),
        "tensorboard": keras.callbacks.TensorBoard(run.tensorboard),  # per-epoch metrics, learning rate, images/s
        "progress": EpochProgress(run.progress, cfg.epochs, images, not interactive, cfg.minutes),
        "backup": backup,
    }
    manifest.write(run.manifest, training=fit.summary)
    return dataclasses.replace(fit, initial_epoch=finished, callbacks=callbacks)


def finish(model: keras.Model, fit: Fit, run: RunDir) -> list[dict]:
    """After ``model.fit``: stop with one line if the loss diverged, else save ``model.keras``; the history."""
    training.check_finite(fit)
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
    """:func:`training.prepare`, :func:`attach`, ``model.fit`` for ``cfg.epochs`` (an interrupted run continues from
    its last finished epoch), :func:`finish`: what notebook 03 shows step by step."""
    fit = attach(training.prepare(model, ds, cfg, strategy, placement), model, cfg, run, interactive)
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
