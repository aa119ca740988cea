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
    assert "| smoke |" in bench.table(result)
    bench.save(result, tmp_path / "bench.json")
    assert (tmp_path / "bench.json").read_text().startswith("{")


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
