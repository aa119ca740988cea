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
