"""The compare step over a few run directories, including one over budget and one on generated data."""

import json

import pytest

from cifar100_helpers.errors import RunError
from cifar100_helpers.running import leaderboard, notebook_runner
from cifar100_helpers.running.markup import escape

LR = {v: escape(f"cpu learning_rate={v}") for v in ("0.1", "0.2")}  # as the tables show them


def fake_run(outputs, name, recipe, top1, over_budget=False, generated=False, minutes=2.0, seed=0, **config):
    run = outputs / name
    run.mkdir(parents=True)
    metrics = {
        "recipe": recipe, "epochs": 12 if over_budget else 10, "over_budget": over_budget, "generated_data": generated,
        "top1": top1, "top1_ci95": [top1 - 0.01, top1 + 0.01], "top1_tta": top1 + 0.01,
        "top1_tta_ci95": [top1, top1 + 0.02], "top5": top1 + 0.2, "top5_ci95": [top1 + 0.19, top1 + 0.21],
        "tta": "flip", "superclass_accuracy": {"fish": top1, "trees": top1 / 2},
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    manifest = {"status": "completed", "config": {"model": "airbench", "image_size": 32, "seed": seed, **config},
                "hardware": {"cpu": "AMD EPYC", "gpus": []},
                "attempts": [{"started": "2026-11-28T09:00:00+00:00"}]}  # fmt: skip
    (run / "run.json").write_text(json.dumps(manifest))
    (run / "history.csv").write_text(f"epoch,loss,seconds\n1,1.0,{minutes * 60}\n")
    return run


@pytest.fixture
def outputs(tmp_path):
    fake_run(tmp_path, "seed-a", "seed", 0.55)
    fake_run(tmp_path, "cpu-b", "cpu", 0.64)
    fake_run(tmp_path, "cpu-long", "cpu", 0.70, over_budget=True)
    fake_run(tmp_path, "demo", "smoke", 0.78, generated=True)  # the best, unranked (top-5 within 1)
    return tmp_path


def test_leaderboard_ranks_only_runs_within_the_rules(outputs):
    rows = leaderboard.collect(outputs)
    assert [r["run"] for r in rows if r["ranked"]] == ["cpu-b", "seed-a"]
    table = leaderboard.leaderboard(rows)
    assert "| 1 | cpu-b |" in table and "| 2 | seed-a |" in table
    assert "64.00% (63.0%-65.0%)" in table and "84.00% (83.0%-85.0%)" in table
    assert "cpu-long" not in table and "demo" not in table
    everything = leaderboard.leaderboard(rows, include_unranked=True)
    assert "cpu-long ⚠ over budget" in everything and "demo ⚠ generated data" in everything
    assert rows[0]["training_minutes"] == 2.0 and rows[0]["best_top1"] == pytest.approx(0.65)


def test_default_pair_is_seed_against_the_best(outputs):
    seed, best = leaderboard.default_pair(leaderboard.collect(outputs))
    assert (seed["run"], best["run"]) == ("seed-a", "cpu-b")


def test_index_links_every_run(outputs):
    page = leaderboard.write_index(outputs, leaderboard.collect(outputs)).read_text()
    for name in ("seed-a", "cpu-b", "cpu-long", "demo"):
        assert f"href='{name}/report.html'" in page
    assert "not ranked: over budget" in page and 'name="viewport"' in page


def test_compare_runs_notebook_05(outputs):
    report = notebook_runner.compare(outputs)
    assert report.exists() and (outputs / "compare" / "05_compare.ipynb").exists()
    assert (outputs / "index.html").exists() and (outputs / "compare-figures" / "accuracy_vs_time.png").exists()


def test_compare_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(RunError, match="No completed runs"):
        notebook_runner.compare(tmp_path)


@pytest.fixture
def seeds(tmp_path):
    """cpu at two learning rates over seeds (the data source differs between seeds, as across machines), one
    seed run, and a cpu run over budget."""
    folder = tmp_path / "seeds"
    for seed, (top1, minutes, data) in enumerate([(0.60, 2.0, "/a"), (0.62, 2.5, "/b"), (0.64, 3.0, "/a")]):
        fake_run(folder, f"cpu-lr0.1-seed{seed}", "cpu", top1, minutes=minutes, seed=seed, learning_rate=0.1,
                 data=data, verify=seed == 1)  # fmt: skip
    for seed, top1 in enumerate([0.61, 0.65]):
        fake_run(folder, f"cpu-lr0.2-seed{seed}", "cpu", top1, seed=seed, learning_rate=0.2)
    fake_run(folder, "seed-a", "seed", 0.50)
    fake_run(folder, "cpu-long", "cpu", 0.70, over_budget=True, learning_rate=0.1)
    return folder


def test_runs_that_differ_only_by_seed_form_one_group(seeds):
    groups = leaderboard.group_runs(leaderboard.collect(seeds))
    assert [(g["group"], g["n"], g["ranked"]) for g in groups] == [
        ("cpu learning_rate=0.2", 2, True), ("cpu learning_rate=0.1", 3, True), ("seed", 1, True),
        ("cpu learning_rate=0.1", 1, False),
    ]  # fmt: skip
    lr01 = groups[1]
    assert lr01["seeds"] == [0, 1, 2] and lr01["runs"] == ["cpu-lr0.1-seed0", "cpu-lr0.1-seed1", "cpu-lr0.1-seed2"]
    assert lr01["top1"]["mean"] == pytest.approx(0.62) and lr01["top1"]["std"] == pytest.approx(0.02)
    assert lr01["best_top1"]["mean"] == pytest.approx(0.63) and lr01["top5"]["mean"] == pytest.approx(0.82)
    assert lr01["best_top5"]["std"] == pytest.approx(0.02)  # no top5_tta in these metrics: plain top-5
    assert lr01["training_minutes"]["mean"] == pytest.approx(2.5) and lr01["training_minutes"]["std"] == 0.5
    single = groups[2]
    assert single["top1"] == {"mean": 0.5, "std": None} and leaderboard.interval(single) == (0.50, 0.52)
    assert leaderboard.interval(lr01) == pytest.approx((0.61, 0.65))


def test_grouped_leaderboard_keeps_the_ranking_rules_and_notes_overlaps(seeds):
    groups = leaderboard.group_runs(leaderboard.collect(seeds))
    table = leaderboard.group_leaderboard(groups)
    assert f"| 1 | {LR['0.2']} | 2 | 0, 1 | 63.00% ± 2.83 | 64.00% ± 2.83 |" in table
    assert f"| 2 | {LR['0.1']} | 3 | 0, 1, 2 | 62.00% ± 2.00 |" in table
    assert "| 3 | seed | 1 | 0 | 50.00% | 51.00% |" in table and "over budget" not in table
    notes = leaderboard.spread_notes([g for g in groups if g["ranked"]])
    assert notes == ["cpu learning_rate=0.2 vs cpu learning_rate=0.1: the difference is within the run-to-run spread"]
    assert table.endswith(f"- {escape(notes[0])}")
    everything = leaderboard.group_leaderboard(groups, include_unranked=True)
    assert f"| - | {LR['0.1']} ⚠ over budget | 1 |" in everything


def test_single_runs_with_overlapping_intervals_are_noted_too(tmp_path):
    for name, top1, rate in [("a", 0.64, 0.1), ("b", 0.645, 0.3), ("c", 0.60, 0.5)]:  # best top-1 intervals:
        fake_run(tmp_path, name, "cpu", top1, learning_rate=rate)  # 65-67%, 65.5-67.5%, 61-63%
    groups = leaderboard.group_runs(leaderboard.collect(tmp_path))
    assert [g["n"] for g in groups] == [1, 1, 1] and leaderboard.interval(groups[0]) == (0.645, 0.665)
    assert leaderboard.spread_notes(groups) == [
        "cpu learning_rate=0.3 vs cpu learning_rate=0.1: the difference is within the 95% intervals of the two runs"
    ]


def test_index_and_chart_show_the_spread_across_seeds(seeds, outputs):
    from cifar100_helpers import plots

    rows = leaderboard.collect(seeds)
    page = leaderboard.write_index(seeds, rows).read_text()
    assert "Across seeds" in page and f"<td>{LR['0.1']}</td><td>3</td><td>62.00% ± 2.00</td>" in page
    assert "within the run-to-run spread" in page
    assert "Across seeds" not in leaderboard.write_index(outputs, leaderboard.collect(outputs)).read_text()
    fig = plots.accuracy_vs_time(rows, leaderboard.group_runs(rows))
    bars = [c for c in fig.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 2  # the two settings repeated over seeds
