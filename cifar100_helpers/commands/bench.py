"""Throughput of each recipe's training step fed by the real input pipeline, and of the pipeline alone."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

from .. import data, machine, pace
from ..config import EPOCH_BUDGET, make_config
from ..files import write_atomic
from ..running import manifest

TRAIN_IMAGES = 45_000  # the training split after the default 5,000-image validation hold-out
CORES = os.cpu_count() or 1
SLOW_ON_CPU = {"seed": "EfficientNetV2L", "transfer": "EfficientNetV2S at 224 px"}  # minutes and gigabytes on a CPU


def choose(named: list[str] | None, every: list[str], accelerator: bool) -> tuple[list[str], list[str]]:
    """The recipes to bench and the notes to print before the first: ``named`` ones, else ``every`` one except, on
    a machine without GPU or TPU, those whose networks take many minutes and gigabytes of memory there
    (SLOW_ON_CPU; a bench of all on 2 cores ran over 15 minutes in 11.5 GB, silent)."""
    slow = [r for r in (named or every) if r in SLOW_ON_CPU] if not accelerator else []
    what = ", ".join(f"{r} ({SLOW_ON_CPU[r]})" for r in slow)
    if named:
        notes = [f"{what} on a CPU: expect many minutes and several GB of memory per recipe"] if slow else []
        return named, notes
    notes = [f"skipping {what}: on a CPU each takes many minutes and several GB of memory; name it with --recipes "
             "to bench it anyway"] if slow else []  # fmt: skip
    return [r for r in every if r not in slow], notes


def images_per_second(run_steps, batch_size: int, steps: int) -> float:
    started = time.perf_counter()
    run_steps(steps)
    return steps * batch_size / (time.perf_counter() - started)


def bench_recipe(name: str, ds: data.Cifar100, steps: int, warmup: int, overrides: dict | None = None) -> dict:
    """Training images/second of one recipe fed by its own input pipeline, timed over ``steps`` steps after
    ``warmup`` of the same ``fit``, with the run's per-step machinery on (the weight EMA inside the step, the NaN
    check, the epoch state of the input pipeline, ``steps_per_execution``); and of that pipeline alone
    (pretrained weights skipped: same compute, no download). ``overrides`` are ``--set`` changes to the recipe."""
    cfg = make_config(name, **{"weights": None, **(overrides or {})})
    timing = pace.time_training(cfg, ds, steps, warmup)
    batch, train_ips = timing.global_batch, timing.images_per_second
    iterator = iter(timing.batches)
    next(iterator)
    pipeline_ips = images_per_second(lambda n: [next(iterator) for _ in range(n)], batch, max(20, steps))
    parameters, placement = timing.parameters, timing.placement
    return {
        "recipe": name,
        "overrides": overrides or {},
        "parameters": parameters,
        "global_batch_size": batch,
        "placement": placement.to_dict(),
        "timed_steps": timing.timed_steps,
        "train_images_per_second": round(train_ips, 1),
        "input_pipeline_images_per_second": round(pipeline_ips, 1),
        "input_pipeline_images_per_second_per_core": round(pipeline_ips / CORES, 1),
        "pipeline_to_train_ratio": round(pipeline_ips / train_ips, 1),
        "projected_10_epoch_minutes": round(EPOCH_BUDGET * TRAIN_IMAGES / train_ips / 60, 1),
    }


def run(recipes: list[str], ds: data.Cifar100, steps: int = 30, warmup: int = 5, overrides: dict | None = None) -> dict:
    """Every recipe's training throughput (with ``overrides`` applied to each), its pipeline's, and its ratio to
    ``seed``."""
    rows = []
    for number, name in enumerate(recipes, 1):
        say(f"{number}/{len(recipes)} {name}: building it, then timing {steps} training steps after {warmup} "
            "warm-up steps, then its input pipeline alone")  # fmt: skip
        rows.append(bench_recipe(name, ds, steps, warmup, overrides))
        say(f"{number}/{len(recipes)} {name}: {rows[-1]['train_images_per_second']:.1f} training images/s, its "
            f"input pipeline alone {rows[-1]['input_pipeline_images_per_second']:.0f} images/s")  # fmt: skip
    seed = next((r["train_images_per_second"] for r in rows if r["recipe"] == "seed"), None)
    for row in rows:
        row["ratio_to_seed"] = round(row["train_images_per_second"] / seed, 2) if seed else None
    return {
        "measured": manifest.now(),
        "data": ds.source,
        "hardware": machine.describe(),
        "versions": manifest.package_versions(),
        "steps": steps,
        "recipes": rows,
    }


def say(line: str) -> None:
    """One progress line, as each recipe starts and ends (a slow one is never silent)."""
    print(f"[{manifest.now()}] bench {line}", flush=True)


def cores_needed(pipeline_per_core: float, images_per_second: float) -> int:
    """CPU cores the input pipeline needs to feed ``images_per_second`` (assuming it scales with cores)."""
    return math.ceil(images_per_second / pipeline_per_core)


def table(result: dict, gpu_images_per_second: float = 1700) -> str:
    lines = [
        "| recipe | parameters | global batch | train images/s | ratio to seed | projected 10 epochs (min) "
        f"| its input pipeline alone, images/s | per core | cores to feed {gpu_images_per_second:g} images/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["recipes"]:
        ratio = f"{r['ratio_to_seed']:.2f}" if r["ratio_to_seed"] else "n/a"
        lines.append(
            f"| {r['recipe']} | {r['parameters']:,} | {r['global_batch_size']} | {r['train_images_per_second']:.1f} "
            f"| {ratio} | {r['projected_10_epoch_minutes']:.1f} | {r['input_pipeline_images_per_second']:.0f} "
            f"({r['pipeline_to_train_ratio']:.1f}x) | {r['input_pipeline_images_per_second_per_core']:.0f} "
            f"| {cores_needed(r['input_pipeline_images_per_second_per_core'], gpu_images_per_second)} |"
        )
    hw = result["hardware"]
    gpus = ", ".join(hw["gpus"]) or "no GPU"
    lines.append(f"\nMachine: {hw['cpu']}, {hw['cpu_cores']} cores, {gpus}; {result['steps']} timed steps per recipe.")
    return "\n".join(lines)


def load_bench_data(path: str | None, verify: bool) -> data.Cifar100:
    """The real data when given, else a generated set in the same format (throughput ignores pixels)."""
    if path:
        return data.load(path, verify=verify)
    from ..generated_data import write_archive

    with tempfile.TemporaryDirectory() as tmp:
        return data.load(write_archive(Path(tmp) / "c100.tar.gz", train_per_class=30), verify=False)


def save(result: dict, path: Path) -> None:
    write_atomic(path, json.dumps(result, indent=2) + "\n")
