"""How fast this machine trains a config, and which of the `cpu` recipe's named sizes fits a time budget: the real
train step (input pipeline, weight EMA in the step, the NaN check, the epoch state, steps per call) timed over a
window of steps after a warm-up, as `bench` times it, and the 10 epochs projected from it."""

from __future__ import annotations

import dataclasses
import time

import keras

from . import distribute, input_pipeline, models, training
from .config import MARGIN, SIZES, RunConfig, budget_summary
from .data import Cifar100
from .errors import ConfigError


class StepWindow(keras.callbacks.Callback):
    """The wall time of the steps after the first ``warmup`` of one ``fit`` (tracing, compilation and the input
    pipeline's start-up fall before the window; every callback of the run's own is on inside it)."""

    def __init__(self, warmup: int):
        super().__init__()
        self.warmup, self.marks = warmup, []

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 >= self.warmup:
            self.marks.append((batch + 1, time.perf_counter()))

    def images_per_second(self, batch_size: int) -> float:
        (first, started), (last, ended) = self.marks[0], self.marks[-1]
        return (last - first) * batch_size / (ended - started)


@dataclasses.dataclass
class Timing:
    images_per_second: float
    timed_steps: int
    parameters: int
    flops: dict  # per image: models.training_flops
    global_batch: int
    placement: distribute.Placement
    batches: object  # the run's training input pipeline (repeated), for timing it alone


def time_training(cfg: RunConfig, ds: Cifar100, steps: int, warmup: int, cached: bool = False) -> Timing:
    """Training images/second of ``cfg`` on this machine, fed by its own input pipeline, over ``steps`` steps after
    ``warmup`` of the same ``fit``, with the run's per-step machinery on; ``cached``: fed the pipeline's first batch
    over and over instead (the same step without waiting for input)."""
    strategy, placement = distribute.place(cfg)
    batch = distribute.scale(cfg, placement.replicas).global_batch
    if batch > len(ds.train):
        raise ConfigError(
            f"{cfg.recipe}'s global batch {batch} exceeds the {len(ds.train)} training images; pass the real data "
            "with --data PATH."
        )
    with strategy.scope():
        model = models.build(cfg, ds.train.x[:1000])
        training.compile_model(model, cfg, warmup + steps, distribute.scale(cfg, placement.replicas).peak_learning_rate,
                               placement.jit_compile, placement.steps_per_execution)  # fmt: skip
        ema = [training.WeightEMA(model, cfg.ema)] if cfg.ema else []
    state, window = training.EpochState(cfg), StepWindow(warmup)
    batches = input_pipeline.train_dataset(ds.train, batch, cfg, state.size, state.epoch).repeat()
    callbacks = [*ema, state, training.StopOnNonFiniteLoss(), window]
    fed = batches.take(1).cache().repeat() if cached else batches
    model.fit(fed, steps_per_epoch=warmup + steps, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    timed_size = cfg.image_size if state.size is None else int(state.size.numpy())
    parameters, flops = model.count_params(), models.training_flops(model, timed_size)
    keras.backend.clear_session()
    ips = window.images_per_second(batch)
    return Timing(ips, window.marks[-1][0] - window.marks[0][0], parameters, flops, batch, placement, batches)


def projected_minutes(cfg: RunConfig, images: int, images_per_second: float) -> float:
    """Training minutes of ``cfg.epochs`` epochs over ``images`` at ``images_per_second``, with :data:`MARGIN`."""
    return cfg.epochs * images / images_per_second / 60 * MARGIN


def choose_size(cfg: RunConfig, ds: Cifar100, steps: int = 4, warmup: int = 2, say=print) -> tuple[RunConfig, dict]:
    """The largest (most accurate) named size of :data:`config.SIZES` whose projected training minutes fit
    ``cfg.minutes``, timed from the largest down until one fits (the smallest when none does), as a config with
    that size; and the record of the probe for run.json."""
    measured, chosen = {}, None
    for size in reversed(SIZES):
        timing = time_training(dataclasses.replace(cfg, size=size, widths=SIZES[size]), ds, steps, warmup)
        minutes = projected_minutes(cfg, len(ds.train), timing.images_per_second)
        measured[size] = {"images_per_second": round(timing.images_per_second, 1), "projected_minutes":
                          round(minutes, 1), "parameters": timing.parameters}  # fmt: skip
        chosen = size
        if minutes <= cfg.minutes:
            break
    record = {"minutes": cfg.minutes, "margin": MARGIN, "precision": timing.placement.precision, "probe": measured,
              "size": chosen, "projected_minutes": measured[chosen]["projected_minutes"]}  # fmt: skip
    say(f"time budget {cfg.minutes:g} training minutes: {budget_summary(record)}.")
    return dataclasses.replace(cfg, size=chosen, widths=SIZES[chosen]), record


def main(argv: list[str]) -> None:
    """``python -m cifar100_helpers.pace CONFIG_JSON [DATA]``: choose the size of a config with size ``auto`` in
    this process (the pipeline's own process never loads TensorFlow); the budget line, then the record as the last
    line of JSON. Without DATA (generated data) a small generated set is timed."""
    import json
    import tempfile
    from pathlib import Path

    from .config import make_config
    from .data import load

    saved = json.loads(argv[0])
    cfg = make_config(saved.pop("recipe"), **saved)
    with tempfile.TemporaryDirectory() as tmp:
        if len(argv) > 1 and argv[1]:
            ds = load(argv[1], verify=False, val_fraction=cfg.val_fraction, seed=cfg.seed)
        else:
            from .generated_data import write_archive

            ds = load(write_archive(Path(tmp) / "c100.tar.gz", seed=cfg.seed), verify=False)
        _, record = choose_size(cfg, ds)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
