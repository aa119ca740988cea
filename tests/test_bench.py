import json

import pytest

from cifar100_helpers import data
from cifar100_helpers.commands import bench


def test_bench_measures_recipes_and_pipeline(archive, tmp_path):
    ds = data.load(archive, verify=False)
    result = bench.run(["smoke"], ds, steps=3, warmup=2)
    row = result["recipes"][0]
    assert row["recipe"] == "smoke" and row["train_images_per_second"] > 0 and row["timed_steps"] == 3
    assert row["projected_10_epoch_minutes"] > 0 and row["ratio_to_seed"] is None
    assert row["input_pipeline_images_per_second"] > 0 and row["placement"]["kind"] == "cpu"
    assert row["cached_batch_images_per_second"] > 0 and 0 <= row["input_wait_share"] < 1
    assert row["training_gflop_per_image"] > row["forward_gflop_per_image"] > 0
    assert row["achieved_gflops"] == pytest.approx(
        row["training_gflop_per_image"] * row["train_images_per_second"], 0.01
    )
    assert "| smoke |" in bench.table(result) and "FLOP/cycle" in bench.table(result)
    bench.save(result, tmp_path / "bench.json")
    assert (tmp_path / "bench.json").read_text().startswith("{")


@pytest.mark.parametrize("recipe, images", [("cpu", 50_000), ("scratch", 45_000)])
def test_bench_projects_over_the_recipes_own_training_images(recipe, images):
    """cpu trains on all 50,000 images; a recipe that holds out 10% for validation trains on 45,000."""
    from cifar100_helpers.config import make_config

    assert bench.training_images(make_config(recipe)) == images


def test_bench_set_changes_every_recipe_and_is_recorded(archive, tmp_path):
    """`bench --set mixed_precision=False --set widths=[8,8,16]`: what a CPU without bfloat16 would train."""
    from cifar100_helpers.commands import cli

    output = tmp_path / "bench.json"
    argv = ["bench", "--recipes", "cpu", "--data", str(archive), "--no-verify", "--steps", "1", "--output", str(output),
            "--set", "mixed_precision=False", "--set", "widths=[8,8,16]", "--set", "batch_size=32"]  # fmt: skip
    assert cli.main(argv) == 0
    row = json.loads(output.read_text())["recipes"][0]
    assert row["overrides"] == {"mixed_precision": False, "widths": [8, 8, 16], "batch_size": 32}
    assert row["placement"]["precision"] == "float32" and row["global_batch_size"] == 32


@pytest.mark.parametrize(
    "setting, message",
    [("widht=[8,8,16]", "did you mean 'widths'"), ("mixed_precision", "--set expects KEY=VALUE"),
     ("widths=[0,8]", "widths")],
)  # fmt: skip
def test_bench_bad_set_is_one_line(archive, capsys, setting, message):
    from .test_hostile import one_line_error

    assert message in one_line_error(capsys, "bench", "--recipes", "cpu", "--data", archive, "--no-verify", "--set",
                                     setting)  # fmt: skip


def test_flops_are_counted_from_the_layers_shapes():
    """A 3x3 convolution of 4 into 8 channels at 6x6 (frozen, first), then a dense layer of 8 into 5: forward
    2 x 6 x 6 x 9 x 4 x 8 + 2 x 8 x 5; training adds the dense layer's weight gradient, and no input gradient (nothing
    trainable below it); with the convolution trainable, the dense layer's input gradient and the convolution's weight
    gradient too."""
    import keras

    from cifar100_helpers import models

    inputs = keras.Input((6, 6, 4))
    first = keras.layers.Conv2D(8, 3, padding="same", trainable=False)
    x = first(inputs)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalMaxPooling2D()(x))
    conv, dense = 2 * 6 * 6 * 9 * 4 * 8, 2 * 8 * 5
    assert models.training_flops(keras.Model(inputs, outputs), 6) == {
        "forward": conv + dense,
        "training": conv + 2 * dense,
    }
    first.trainable = True
    assert models.training_flops(keras.Model(inputs, outputs), 6)["training"] == 2 * conv + 3 * dense


@pytest.mark.parametrize(
    ("vendor", "flags", "cap", "precision", "isa", "per_cycle"),
    [
        ("AMD EPYC", {"avx2", "avx512f", "avx512_bf16"}, None, "float32", "AVX2", 32),  # Zen 4 splits 512-bit FMAs
        ("AMD EPYC", {"avx2", "avx512f", "avx512_bf16"}, None, "mixed_bfloat16", "AVX512_CORE_BF16", 64),
        ("Intel Xeon", {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, None, "mixed_bfloat16", "AVX512_CORE_AMX", 1024),
        ("Intel Xeon", {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16", "mixed_bfloat16",
         "AVX512_CORE_BF16", 64),
        ("Intel Xeon", {"avx2", "avx512f"}, None, "float32", "AVX512_CORE", 64),
        ("Intel Xeon", {"avx2", "avx512f"}, "AVX2", "float32", "AVX2", 32),
    ],
)  # fmt: skip
def test_the_peak_is_cores_times_clock_times_flops_per_cycle_of_the_isa_in_use(
    monkeypatch, vendor, flags, cap, precision, isa, per_cycle
):
    from cifar100_helpers import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    monkeypatch.setattr(machine, "cpu_model", lambda: vendor)
    monkeypatch.setattr(machine, "clock_ghz", lambda: 2.5)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert machine.compute_isa(precision) == isa
    peak = machine.peak_gflops(precision)
    assert (
        peak["gflops"] == 2 * 2.5 * per_cycle
        and f"2 logical CPUs x 2.50 GHz x {per_cycle} FLOP/cycle ({isa}" in peak["how"]
    )


def test_flops_of_a_model_taking_any_size_are_counted_at_the_size_given():
    """Progressive resizing builds the net for any size (bench of scratch at 3 replicas once died on the None)."""
    import dataclasses

    from cifar100_helpers import models
    from cifar100_helpers.config import RECIPES

    cfg = RECIPES["scratch"]
    fixed = dataclasses.replace(cfg, start_size=None, image_size=cfg.start_size)
    assert models.build_airbench(cfg).input.shape[1] is None
    assert models.training_flops(models.build_airbench(cfg), cfg.start_size) == models.training_flops(
        models.build_airbench(fixed), cfg.start_size
    )


def test_bench_takes_smoke_only_when_named():
    """gpu-check's orchestration test benches smoke; bench's default list leaves it out."""
    from cifar100_helpers.commands import cli

    assert cli.parser().parse_args(["bench", "--recipes", "smoke"]).recipes == ["smoke"]
    assert "smoke" not in cli.BENCH_RECIPES
