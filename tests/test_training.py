import dataclasses
import shutil

import keras
import numpy as np
import pytest

from cifar100_helpers import config, data, evaluation, hardware, models, training
from cifar100_helpers.errors import RunError
from cifar100_helpers.layout import RunDir


def test_warmup_then_cosine_to_zero():
    cfg = config.make_config("cpu", learning_rate=0.2, warmup_epochs=1, epochs=10)
    schedule = training.learning_rate(cfg, steps_per_epoch=100)
    values = [float(schedule(step)) for step in (0, 50, 100, 550, 1000)]
    assert values[0] == pytest.approx(0.0)
    assert values[1] == pytest.approx(0.1)
    assert values[2] == pytest.approx(0.2)
    assert values[3] == pytest.approx(0.1, abs=1e-6)  # halfway through the cosine
    assert values[4] == pytest.approx(0.0, abs=1e-7)


def test_constant_schedule():
    assert training.learning_rate(config.make_config("seed"), 100) == 1e-4


def test_weight_decay_skips_batchnorm_and_biases():
    optimizer = training.make_optimizer(config.make_config("cpu"), 10)
    kernel, gamma = keras.Variable(np.ones(3), name="kernel"), keras.Variable(np.ones(3), name="gamma")
    assert optimizer._use_weight_decay(kernel) and not optimizer._use_weight_decay(gamma)


@pytest.mark.slow  # 10 epochs of a small cpu network (make test-slow)
def test_cpu_recipe_learns_generated_data(archive, tmp_path):
    """A short training of the cpu recipe beats chance (1%) by a wide margin."""
    cfg = config.make_config("cpu", epochs=4, batch_size=64, learning_rate=0.1, verify=False)
    ds = data.load(archive, verify=False, val_fraction=cfg.val_fraction)
    run = RunDir(tmp_path / "run").create()
    model = models.build(cfg, ds.train.x)
    history = training.train(model, ds, cfg, run, interactive=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert all(r["images_per_second"] > 0 and r["seconds"] > 0 for r in history)
    assert history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-3)
    probs = evaluation.predict(keras.models.load_model(run.model), ds.test.x)
    assert evaluation.top_k_accuracy(probs, ds.test.fine, 1) > 0.3
    assert run.checkpoint.exists()


def test_history_keeps_one_row_per_epoch(tmp_path):
    path = tmp_path / "history.csv"
    rows = [{"epoch": 2, "loss": 1.0}, {"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 0.5}]
    merged = {}
    for row in rows:
        merged[row["epoch"]] = row
        path.write_text(training.history_text(list(merged.values())))
    history = training.read_history(path)
    assert [(r["epoch"], r["loss"]) for r in history] == [(1, 2.0), (2, 0.5)]


def test_budget_statement_flags_over_budget():
    history = [{"epoch": e, "seconds": 6.0} for e in range(1, 13)]
    cfg = config.make_config("cpu", epochs=12, allow_over_budget=True)
    assert training.budget_statement(history, cfg).startswith("OVER BUDGET")
    assert training.budget_statement(history[:10], config.make_config("cpu")) == (
        "10 of the 10-epoch budget used (1.0 min of training)."
    )


def test_training_again_after_it_finished_trains_nothing(archive, tmp_path):
    """A resume after the last epoch (say the kernel died while saving) must not start over."""
    cfg = config.make_config("smoke", epochs=2)
    ds = data.load(archive, verify=False)
    run = RunDir(tmp_path / "run").create()
    training.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    first = keras.models.load_model(run.model).get_weights()
    again = (
        keras.models.load_model(run.untrained_model) if run.untrained_model.exists() else models.build(cfg, ds.train.x)
    )
    history = training.train(again, ds, cfg, run, interactive=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(first, again.get_weights(), strict=True))


def test_weight_ema_with_few_steps_saves_what_validation_measured(archive, tmp_path):
    """A 0.999 average over ~100 steps used to keep most of the step-1 weights in the saved model
    while history.csv showed the raw weights' validation. Now validation runs on the average, with
    its own BatchNorm statistics, and the saved model is exactly what was validated."""
    cfg = config.make_config(
        "cpu", epochs=3, batch_size=64, learning_rate=0.1, ema=0.999, verify=False, val_fraction=0.1
    )
    ds = data.load(archive, verify=False, val_fraction=cfg.val_fraction)
    run = RunDir(tmp_path / "run").create()
    history = training.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    saved = keras.models.load_model(run.model)
    val_accuracy = evaluation.top_k_accuracy(evaluation.predict(saved, ds.val.x), ds.val.fine, 1)
    assert val_accuracy == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)
    assert val_accuracy > 0.2  # far above chance (1%): not the step-1 weights


def test_a_crash_after_an_epoch_resumes_to_the_same_weights_with_ema(archive, tmp_path, monkeypatch):
    """The resume state holds the model, the optimizer and the weight EMA: training killed after
    epoch 2 of 3 and started again ends with the weights of an uninterrupted run, bit for bit."""
    cfg = config.make_config("smoke", epochs=3, ema=0.9, deterministic=True)
    ds = data.load(archive, verify=False)

    def fit(folder):
        hardware.place(cfg)
        run = RunDir(tmp_path / folder).create()
        model = models.build(cfg, ds.train.x)
        model.save(run.untrained_model)
        return run, model

    straight, model = fit("straight")
    training.train(model, ds, cfg, straight, interactive=False)

    crashed, model = fit("crashed")
    save = training.Backup.on_epoch_end

    def crash_after_epoch_two(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Backup, "on_epoch_end", crash_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        training.train(model, ds, cfg, crashed, interactive=False)
    monkeypatch.undo()
    resumed = keras.models.load_model(crashed.untrained_model)
    history = training.train(resumed, ds, cfg, crashed, interactive=False)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    expected = keras.models.load_model(straight.model).get_weights()
    for a, b in zip(keras.models.load_model(crashed.model).get_weights(), expected, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda backup: (backup / "epoch-002.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\ntruncated"), "epoch-002"),
        (lambda backup: (backup / "state.json").write_text("{not json"), "state.json"),
        (lambda backup: shutil.rmtree(backup), "history.csv records 2 epoch"),
    ],
)
def test_damaged_resume_state_names_the_file_and_the_way_forward(archive, tmp_path, damage, message):
    cfg = config.make_config("smoke", epochs=3)
    ds = data.load(archive, verify=False)
    run = RunDir(tmp_path / "run").create()
    training.train(models.build(cfg, ds.train.x), ds, dataclasses.replace(cfg, epochs=2), run, interactive=False)
    damage(run.backup)
    with pytest.raises(RunError, match=message) as err:
        training.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    assert "fresh run" in str(err.value) and "\n" not in str(err.value)
