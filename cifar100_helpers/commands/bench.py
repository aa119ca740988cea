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


def training_images(cfg) -> int:
    """Images an epoch of ``cfg`` trains on: the official training split less its validation hold-out (``cpu``
    holds out none: 50,000)."""
    return round(data.OFFICIAL_COUNTS[0] * (1 - cfg.val_fraction))


def images_per_second(run_steps, batch_size: int, steps: int) -> float:
    started = time.perf_counter()
    run_steps(steps)
    return steps * batch_size / (time.perf_counter() - started)


def bench_recipe(name: str, ds: data.Cifar100, steps: int, warmup: int, overrides: dict | None = None) -> dict:
    """Training images/second of one recipe fed by its own input pipeline, timed over ``steps`` steps after
    ``warmup`` of the same ``fit``, with the run's per-step machinery on (the weight EMA inside the step, the NaN
    check, the epoch state of the input pipeline, ``steps_per_execution``); the same step fed one cached batch
    (the share of the step spent waiting for input is the difference); that pipeline alone; the FLOPs per training
    image counted from the model and the achieved GFLOP/s against this CPU's peak (pretrained weights skipped: same
    compute, no download). ``overrides`` are ``--set`` changes to the recipe."""
    cfg = make_config(name, **{"weights": None, **(overrides or {})})
    timing = pace.time_training(cfg, ds, steps, warmup)
    cached_ips = pace.time_training(cfg, ds, steps, warmup, cached=True).images_per_second
    batch, train_ips = timing.global_batch, timing.images_per_second
    iterator = iter(timing.batches)
    next(iterator)
    pipeline_ips = images_per_second(lambda n: [next(iterator) for _ in range(n)], batch, max(20, steps))
    parameters, placement = timing.parameters, timing.placement
    achieved = timing.flops["training"] * train_ips / 1e9
    peak = machine.peak_gflops(placement.precision) if placement.kind == "cpu" else {"gflops": None, "how": "n/a"}
    return {
        "recipe": name,
        "overrides": overrides or {},
        "parameters": parameters,
        "global_batch_size": batch,
        "placement": placement.to_dict(),
        "timed_steps": timing.timed_steps,
        "train_images_per_second": round(train_ips, 1),
        "cached_batch_images_per_second": round(cached_ips, 1),
        "input_wait_share": round(max(0.0, 1 - train_ips / cached_ips), 3),  # of each step, waiting for input
        "training_gflop_per_image": round(timing.flops["training"] / 1e9, 3),
        "forward_gflop_per_image": round(timing.flops["forward"] / 1e9, 3),
        "achieved_gflops": round(achieved, 1),
        "peak_gflops": peak["gflops"],
        "peak_how": peak["how"],
        "peak_share": round(achieved / peak["gflops"], 3) if peak["gflops"] else None,
        "input_pipeline_images_per_second": round(pipeline_ips, 1),
        "input_pipeline_images_per_second_per_core": round(pipeline_ips / CORES, 1),
        "pipeline_to_train_ratio": round(pipeline_ips / train_ips, 1),
        "projected_10_epoch_minutes": round(EPOCH_BUDGET * training_images(cfg) / train_ips / 60, 1),
    }


def run(recipes: list[str], ds: data.Cifar100, steps: int = 30, warmup: int = 5, overrides: dict | None = None) -> dict:
    """Every recipe's training throughput (with ``overrides`` applied to each), its pipeline's, and its ratio to
    ``seed``."""
    rows = []
    for number, name in enumerate(recipes, 1):
        say(f"{number}/{len(recipes)} {name}: building it, then timing {steps} training steps after {warmup} "
            "warm-up steps, again fed one cached batch, then its input pipeline alone")  # fmt: skip
        rows.append(bench_recipe(name, ds, steps, warmup, overrides))
        row = rows[-1]
        say(f"{number}/{len(recipes)} {name}: {row['train_images_per_second']:.1f} training images/s "
            f"({row['achieved_gflops']:.0f} GFLOP/s at {row['training_gflop_per_image']:.3f} GFLOP an image), "
            f"{row['input_wait_share']:.0%} of each step waiting for input, its input pipeline alone "
            f"{row['input_pipeline_images_per_second']:.0f} images/s")  # fmt: skip
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
        "| GFLOP per training image | achieved GFLOP/s | share of peak | waiting for input "
        f"| its input pipeline alone, images/s | per core | cores to feed {gpu_images_per_second:g} images/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["recipes"]:
        ratio = f"{r['ratio_to_seed']:.2f}" if r["ratio_to_seed"] else "n/a"
        share = f"{r['peak_share']:.0%}" if r["peak_share"] is not None else "n/a"
        lines.append(
            f"| {r['recipe']} | {r['parameters']:,} | {r['global_batch_size']} | {r['train_images_per_second']:.1f} "
            f"| {ratio} | {r['projected_10_epoch_minutes']:.1f} | {r['training_gflop_per_image']:.3f} "
            f"| {r['achieved_gflops']:.0f} | {share} | {r['input_wait_share']:.0%} "
            f"| {r['input_pipeline_images_per_second']:.0f} ({r['pipeline_to_train_ratio']:.1f}x) "
            f"| {r['input_pipeline_images_per_second_per_core']:.0f} "
            f"| {cores_needed(r['input_pipeline_images_per_second_per_core'], gpu_images_per_second)} |"
        )
    hw = result["hardware"]
    gpus = ", ".join(hw["gpus"]) or "no GPU"
    peaks = sorted({r["peak_how"] for r in result["recipes"] if r["peak_gflops"]})
    lines.append(f"\nMachine: {hw['cpu']}, {hw['cpu_cores']} cores, {gpus}; {result['steps']} timed steps per recipe.")
    lines += [f"Peak: {how}." for how in peaks]
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
