"""Judge a recipe change on the validation split only: train a config exactly as a run does, then
score the held-out 5,000 training images with each test-time augmentation. The test split is
never read, so a table of such results can steer a recipe without overfitting the test set."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from .. import data, distribute, evaluation, machine, models, pace
from ..config import SIZES, TTA_MODES, RunConfig
from ..errors import ConfigError, RunError
from ..files import read_json, write_atomic
from ..running import epoch_files, manifest, notebook_runner
from ..running.run_dir import RunDir

HOLDOUT = 0.1  # of the training split, when the recipe itself holds out nothing


def validate(cfg: RunConfig, folder: Path, changes: dict) -> dict:
    """Train ``cfg`` into ``folder`` (resumable like a run: the same command continues it) and return
    validation top-1 per TTA mode, training minutes and what was changed; the result is also written to
    ``folder``/validation.json. One process per folder, and a folder keeps its settings. A recipe that
    trains on every training image (val_fraction 0, like ``cpu``) is tuned with HOLDOUT of them held out.
    A tune that fails before its first epoch is saved removes the folder it created."""
    if not cfg.val_fraction and "val_fraction" not in changes:
        cfg = dataclasses.replace(cfg, val_fraction=HOLDOUT)
    if not cfg.val_fraction:
        raise ConfigError("tune scores the validation split, so val_fraction must be above 0 (--set val_fraction=0.1).")
    created = not check_folder(folder).exists()
    run = RunDir(folder).create()
    try:
        with notebook_runner.locked(run):
            return train_and_score(cfg, run, changes)
    except BaseException:  # Ctrl-C too: an empty training is nothing to continue
        if created and not run.resume_state.exists():
            shutil.rmtree(run.root, ignore_errors=True)
        raise


def check_folder(folder: Path) -> Path:
    """``folder`` if tune may write there: new, empty, or an earlier tune's (its config.json, and no run.json
    of a `run`: theirs lists the notebooks). Anything else is refused, so a finished run is never rewritten."""
    run = RunDir(folder)
    if not run.root.is_dir() or not any(run.root.iterdir()):
        return Path(folder)
    recorded = read_json(run.manifest, "restore it") if run.manifest.exists() else {}
    if "notebooks" in recorded:
        raise RunError(f"{run.root} is a run directory (made by `run`): tune never writes into one; choose a new "
                       "--output.")  # fmt: skip
    if not run.config.exists():
        raise RunError(f"{run.root} holds other files and no tune's config.json: choose a new --output (tune "
                       "continues only a folder it made).")  # fmt: skip
    return Path(folder)


def settle_size(cfg: RunConfig, run: RunDir, ds: data.Cifar100) -> tuple[RunConfig, dict | None]:
    """Size ``auto``: the size this folder's earlier attempt chose, else the one that fits the budget here."""
    if cfg.size != "auto":
        return cfg, None
    saved = read_json(run.config, "restore it, or choose a new --output") if run.config.exists() else {}
    if saved.get("size") in SIZES:
        return dataclasses.replace(cfg, size=saved["size"], widths=SIZES[saved["size"]]), None
    return pace.choose_size(cfg, ds)


def train_and_score(cfg: RunConfig, run: RunDir, changes: dict) -> dict:
    ds = data.load_for(cfg, run)  # before the devices are set up: a bad --data fails at once
    cfg, budget = settle_size(cfg, run, ds)
    settings = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as read back from the file
    if run.config.exists() and read_json(run.config, "restore it, or choose a new --output") != settings:
        raise ConfigError(
            f"{run.root} holds a training with other settings ({run.config}): choose a new --output, or repeat "
            "that command's --set values to continue it."
        )
    write_atomic(run.config, json.dumps(settings, indent=1))
    strategy, placement = distribute.place(cfg)
    with strategy.scope():
        model = models.build(cfg, ds.train.x[:5000])
    started = time.time()
    history = epoch_files.train(model, ds, cfg, run, interactive=False, strategy=strategy, placement=placement)
    top1 = {
        mode: evaluation.top_k_accuracy(evaluation.predict(model, ds.val.x, mode), ds.val.fine, 1) for mode in TTA_MODES
    }
    result = {
        "changes": changes,
        "recipe": cfg.recipe,
        "seed": cfg.seed,
        "val_top1": top1,
        "validation_images": len(ds.val),
        "training_minutes": round(sum(r["seconds"] for r in history) / 60, 2),
        "wall_minutes": round((time.time() - started) / 60, 2),
        "epochs": len(history),
        "precision": placement.precision,
        **({"budget": budget} if budget else {}),
        **manifest.git_state(notebook_runner.REPO),
        "hardware": machine.describe(),
    }
    write_atomic(run.root / "validation.json", json.dumps(result, indent=1))
    return result
