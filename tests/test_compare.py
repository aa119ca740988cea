"""The compare step over a few run directories, including one over budget and one on generated data."""

import json

import pytest

from cifar100_helpers import compare, pipeline
from cifar100_helpers.errors import RunError


def fake_run(outputs, name, recipe, top1, over_budget=False, generated=False, minutes=2.0):
    run = outputs / name
    run.mkdir(parents=True)
    metrics = {
        "recipe": recipe, "epochs": 12 if over_budget else 10, "over_budget": over_budget, "generated_data": generated,
        "top1": top1, "top1_ci95": [top1 - 0.01, top1 + 0.01], "top1_tta": top1 + 0.01,
        "top5": top1 + 0.2, "top5_ci95": [top1 + 0.19, top1 + 0.21],
        "tta": "flip", "superclass_accuracy": {"fish": top1, "trees": top1 / 2},
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    manifest = {"config": {"model": "airbench", "image_size": 32}, "hardware": {"cpu": "AMD EPYC", "gpus": []},
                "attempts": [{"started": "2026-11-28T09:00:00+00:00"}]}  # fmt: skip
    (run / "run.json").write_text(json.dumps(manifest))
    (run / "history.csv").write_text(f"epoch,loss,seconds\n1,1.0,{minutes * 60}\n")
    return run


@pytest.fixture
def outputs(tmp_path):
    fake_run(tmp_path, "seed-a", "seed", 0.55)
    fake_run(tmp_path, "cpu-b", "cpu", 0.64)
    fake_run(tmp_path, "cpu-long", "cpu", 0.70, over_budget=True)
    fake_run(tmp_path, "demo", "smoke", 0.9, generated=True)
    return tmp_path


def test_leaderboard_ranks_only_runs_within_the_rules(outputs):
    rows = compare.collect(outputs)
    assert [r["run"] for r in rows if r["ranked"]] == ["cpu-b", "seed-a"]
    table = compare.leaderboard(rows)
    assert "| 1 | cpu-b |" in table and "| 2 | seed-a |" in table
    assert "64.00% (63.0%-65.0%)" in table and "84.00% (83.0%-85.0%)" in table
    assert "cpu-long" not in table and "demo" not in table
    everything = compare.leaderboard(rows, include_unranked=True)
    assert "cpu-long ⚠ over budget" in everything and "demo ⚠ generated data" in everything
    assert rows[0]["training_minutes"] == 2.0 and rows[0]["best_top1"] == pytest.approx(0.65)


def test_default_pair_is_seed_against_the_best(outputs):
    seed, best = compare.default_pair(compare.collect(outputs))
    assert (seed["run"], best["run"]) == ("seed-a", "cpu-b")


def test_index_links_every_run(outputs):
    page = compare.write_index(outputs, compare.collect(outputs)).read_text()
    for name in ("seed-a", "cpu-b", "cpu-long", "demo"):
        assert f"href='{name}/report.html'" in page
    assert "not ranked: over budget" in page and 'name="viewport"' in page


def test_compare_runs_notebook_05(outputs):
    report = pipeline.compare(outputs)
    assert report.exists() and (outputs / "compare" / "05_compare.ipynb").exists()
    assert (outputs / "index.html").exists() and (outputs / "compare-figures" / "accuracy_vs_time.png").exists()


def test_compare_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(RunError, match="No completed runs"):
        pipeline.compare(tmp_path)
