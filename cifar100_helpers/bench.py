"""Throughput of each recipe's training step fed by the real input pipeline, and of the pipeline alone."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import keras

from . import data, manifest, models, training
from .config import EPOCH_BUDGET, make_config
from .layout import write_atomic

TRAIN_IMAGES = 45_000  # the training split after the default 5,000-image validation hold-out


def images_per_second(run_steps, batch_size: int, steps: int) -> float:
    started = time.perf_counter()
    run_steps(steps)
    return steps * batch_size / (time.perf_counter() - started)


def bench_recipe(name: str, ds: data.Cifar100, steps: int, warmup: int) -> dict:
    """Training images/second of one recipe (pretrained weights skipped: same compute, no download)."""
    cfg = make_config(name, weights=None)
    model = models.build(cfg, ds.train.x[:1000])
    training.compile_model(model, cfg, steps_per_epoch=steps)
    batches = data.train_dataset(ds.train, cfg.batch_size, cfg.seed, cfg.crop_pad, cfg.flip).repeat()
    model.fit(batches, steps_per_epoch=warmup, epochs=1, shuffle=False, verbose=0)
    ips = images_per_second(
        lambda n: model.fit(batches, steps_per_epoch=n, epochs=1, shuffle=False, verbose=0), cfg.batch_size, steps
    )
    return {
        "recipe": name,
        "parameters": model.count_params(),
        "batch_size": cfg.batch_size,
        "train_images_per_second": round(ips, 1),
        "projected_10_epoch_minutes": round(EPOCH_BUDGET * TRAIN_IMAGES / ips / 60, 1),
    }


def bench_input_pipeline(ds: data.Cifar100, batch_size: int, steps: int) -> float:
    batches = iter(data.train_dataset(ds.train, batch_size, seed=0).repeat())
    next(batches)

    def consume(n: int) -> None:
        for _ in range(n):
            next(batches)

    return images_per_second(consume, batch_size, steps)


def run(recipes: list[str], ds: data.Cifar100, steps: int = 10, warmup: int = 3) -> dict:
    """Every recipe's training throughput, its ratio to ``seed``, and the input pipeline's throughput."""
    rows = [bench_recipe(name, ds, steps, warmup) for name in recipes]
    keras.backend.clear_session()
    seed = next((r["train_images_per_second"] for r in rows if r["recipe"] == "seed"), None)
    for row in rows:
        row["ratio_to_seed"] = round(row["train_images_per_second"] / seed, 2) if seed else None
    pipeline_ips = bench_input_pipeline(ds, batch_size=256, steps=max(50, steps))
    fastest = max(r["train_images_per_second"] for r in rows)
    return {
        "measured": manifest.now(),
        "data": ds.source,
        "hardware": manifest.hardware(),
        "versions": manifest.package_versions(),
        "recipes": rows,
        "input_pipeline_images_per_second": round(pipeline_ips, 1),
        "input_pipeline_ratio_to_fastest_recipe": round(pipeline_ips / fastest, 1),
    }


def table(result: dict) -> str:
    lines = [
        "| recipe | parameters | batch | train images/s | ratio to seed | projected 10 epochs (min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["recipes"]:
        ratio = f"{r['ratio_to_seed']:.2f}" if r["ratio_to_seed"] else "n/a"
        lines.append(
            f"| {r['recipe']} | {r['parameters']:,} | {r['batch_size']} | {r['train_images_per_second']:.0f} | "
            f"{ratio} | {r['projected_10_epoch_minutes']:.1f} |"
        )
    lines.append(
        f"\nInput pipeline alone: {result['input_pipeline_images_per_second']:.0f} images/s "
        f"({result['input_pipeline_ratio_to_fastest_recipe']:.1f}x the fastest recipe). "
        f"Machine: {result['hardware']['cpu']}, {result['hardware']['cpu_cores']} cores."
    )
    return "\n".join(lines)


def load_bench_data(path: str | None, verify: bool) -> data.Cifar100:
    """The real data when given, else a generated set in the same format (throughput ignores pixels)."""
    if path:
        return data.load(path, verify=verify)
    from .generated_data import write_archive

    with tempfile.TemporaryDirectory() as tmp:
        return data.load(write_archive(Path(tmp) / "c100.tar.gz", train_per_class=30), verify=False)


def save(result: dict, path: Path) -> None:
    write_atomic(path, json.dumps(result, indent=2) + "\n")
