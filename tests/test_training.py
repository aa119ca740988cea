import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest

from cifar100_helpers import config, data, distribute, evaluation, models, training
from cifar100_helpers.errors import RunError
from cifar100_helpers.running import epoch_files
from cifar100_helpers.running.history import history_text, read_history
from cifar100_helpers.running.run_dir import RunDir


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


@pytest.mark.slow  # 4 epochs of the cpu network at size XXS (make test-slow)
def test_cpu_recipe_learns_generated_data(archive, tmp_path):
    """A short training of the cpu recipe beats chance (1%) by a wide margin."""
    cfg = config.make_config("cpu", size="XXS", epochs=4, batch_size=64, learning_rate=0.1, verify=False)
    ds = data.load(archive, verify=False, val_fraction=cfg.val_fraction)
    run = RunDir(tmp_path / "run").create()
    model = models.build(cfg, ds.train.x)
    history = epoch_files.train(model, ds, cfg, run, interactive=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert all(r["images_per_second"] > 0 and r["seconds"] > 0 for r in history)
    assert history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-3)
    probs = evaluation.predict(keras.models.load_model(run.model), ds.test.x)
    assert evaluation.top_k_accuracy(probs, ds.test.fine, 1) > 0.3
    assert run.resume_state.exists()


@pytest.mark.parametrize("cpu_bfloat16", [True], indirect=True)
def test_bfloat16_on_the_cpu_keeps_float32_where_it_matters(cpu_bfloat16, archive, tmp_path):
    """What place() picks on a CPU with native bfloat16, end to end: the model computes in bfloat16, while the
    weights, the augmented batches, BatchNorm's statistics and the softmax (so the loss) stay float32, the weight
    EMA included; run.json records the precision and the model learns."""
    from cifar100_helpers import input_pipeline

    cfg = config.make_config("smoke", epochs=2, ema=0.9, seed=3)
    ds = data.load(archive, verify=False)
    strategy, placement = distribute.place(cfg)
    assert placement.precision == "mixed_bfloat16"
    run = RunDir(tmp_path / "run").create()
    model = models.build(cfg, ds.train.x)
    model.save(run.untrained_model)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable]
    assert {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    assert model.output.dtype == "float32"
    state = training.EpochState(cfg)
    images, _ = next(iter(input_pipeline.train_dataset(ds.train, 16, cfg, state.size, state.epoch)))
    assert images.dtype in ("uint8", "float32")  # exact pixels: the model's first layer casts them
    history = epoch_files.train(model, ds, cfg, run, False, strategy, placement)
    assert np.isfinite(history[-1]["loss"]) and history[-1]["accuracy"] > 0.05  # chance: 0.01
    assert json.loads(run.manifest.read_text())["training"]["precision"] == "mixed_bfloat16"
    saved = keras.models.load_model(run.model)
    batchnorm = [w for w in saved.weights if "moving" in w.path]
    assert batchnorm and {w.dtype for w in batchnorm} == {"float32"}
    probs = evaluation.predict(saved, ds.test.x)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1, atol=1e-3)


def test_history_keeps_one_row_per_epoch(tmp_path):
    path = tmp_path / "history.csv"
    rows = [{"epoch": 2, "loss": 1.0}, {"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 0.5}]
    merged = {}
    for row in rows:
        merged[row["epoch"]] = row
        path.write_text(history_text(list(merged.values())))
    history = read_history(path)
    assert [(r["epoch"], r["loss"]) for r in history] == [(1, 2.0), (2, 0.5)]


def test_budget_statement_flags_over_budget():
    history = [{"epoch": e, "seconds": 6.0} for e in range(1, 13)]
    cfg = config.make_config("cpu", epochs=12, allow_over_budget=True)
    assert training.budget_statement(history, cfg).startswith("OVER BUDGET")
    assert training.budget_statement(history[:10], config.make_config("cpu")) == (
        "10 of the 10-epoch budget used (1.0 min of training of a 30-minute budget)."
    )
    assert training.budget_statement(history[:10], config.make_config("cpu", size="S")).endswith(
        "(1.0 min of training of a 30-minute budget, size S)."
    )


def test_training_again_after_it_finished_trains_nothing(archive, tmp_path):
    """A resume after the last epoch (say the kernel died while saving) must not start over."""
    cfg = config.make_config("smoke", epochs=2)
    ds = data.load(archive, verify=False)
    run = RunDir(tmp_path / "run").create()
    epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    first = keras.models.load_model(run.model).get_weights()
    again = (
        keras.models.load_model(run.untrained_model) if run.untrained_model.exists() else models.build(cfg, ds.train.x)
    )
    history = epoch_files.train(again, ds, cfg, run, interactive=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(first, again.get_weights(), strict=True))


@pytest.mark.slow  # make test-slow
def test_weight_ema_with_few_steps_saves_what_validation_measured(archive, tmp_path):
    """A 0.999 average over ~100 steps used to keep most of the step-1 weights in the saved model
    while history.csv showed the raw weights' validation. Now validation runs on the average, with
    its own BatchNorm statistics, and the saved model is exactly what was validated."""
    cfg = config.make_config(
        "cpu", size="XXS", epochs=3, batch_size=64, learning_rate=0.1, ema=0.999, verify=False, val_fraction=0.1
    )
    ds = data.load(archive, verify=False, val_fraction=cfg.val_fraction)
    run = RunDir(tmp_path / "run").create()
    history = epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    saved = keras.models.load_model(run.model)
    val_accuracy = evaluation.top_k_accuracy(evaluation.predict(saved, ds.val.x), ds.val.fine, 1)
    assert val_accuracy == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)
    assert val_accuracy > 0.2  # far above chance (1%): not the step-1 weights


@pytest.mark.parametrize(
    "cpu_bfloat16", [pytest.param(True, marks=pytest.mark.slow), False], indirect=True
)  # bfloat16: a minute where the CPU only emulates it (make test-slow)
def test_a_crash_after_an_epoch_resumes_to_the_same_weights_with_ema(cpu_bfloat16, archive, tmp_path, monkeypatch):
    """The resume state holds the model, the optimizer and the weight EMA: training killed after
    epoch 2 of 3 and started again ends with the weights of an uninterrupted run, bit for bit, in float32 and
    in the bfloat16 a CPU with native bfloat16 trains in."""
    cfg = config.make_config("smoke", epochs=3, ema=0.9, deterministic=True)
    ds = data.load(archive, verify=False)

    def fit(folder):
        _, placement = distribute.place(cfg)
        assert placement.precision == ("mixed_bfloat16" if cpu_bfloat16 else "float32")
        run = RunDir(tmp_path / folder).create()
        model = models.build(cfg, ds.train.x)
        model.save(run.untrained_model)
        return run, model

    straight, model = fit("straight")
    epoch_files.train(model, ds, cfg, straight, interactive=False)

    crashed, model = fit("crashed")
    save = epoch_files.Backup.on_epoch_end

    def crash_after_epoch_two(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(epoch_files.Backup, "on_epoch_end", crash_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        epoch_files.train(model, ds, cfg, crashed, interactive=False)
    monkeypatch.setattr(epoch_files.Backup, "on_epoch_end", save)
    resumed = keras.models.load_model(crashed.untrained_model)
    history = epoch_files.train(resumed, ds, cfg, crashed, interactive=False)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    expected = keras.models.load_model(straight.model).get_weights()
    for a, b in zip(keras.models.load_model(crashed.model).get_weights(), expected, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda backup: (backup / "slot-b.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\ntruncated"), "slot-b"),
        (lambda backup: (backup / "state.json").write_text("{not json"), "state.json"),
        (
            lambda backup: (backup / "state.json").write_text('{"epoch": -5, "weights": "slot-a.weights.h5"}'),
            "state.json",
        ),
        (
            lambda backup: (backup / "state.json").write_text(
                '{"epoch": 2, "weights": "slot-b.weights.h5", "iterations": "x", "steps_per_epoch": 56}'
            ),
            "state.json",
        ),
        (lambda backup: shutil.rmtree(backup), "history.csv records 2 epoch"),
    ],
)
def test_damaged_resume_state_names_the_file_and_the_way_forward(archive, tmp_path, damage, message):
    cfg = config.make_config("smoke", epochs=3)
    ds = data.load(archive, verify=False)
    run = RunDir(tmp_path / "run").create()
    epoch_files.train(models.build(cfg, ds.train.x), ds, dataclasses.replace(cfg, epochs=2), run, interactive=False)
    damage(run.backup)
    with pytest.raises(RunError, match=message) as err:
        epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    assert "fresh run" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- per-step costs (accelerators)


class ReferenceEMA(keras.callbacks.Callback):
    """The weight average as the callback before it computed it: from Python, after every step."""

    def __init__(self, model, momentum):
        super().__init__()
        self.momentum, self.step = momentum, 0
        self.average = [np.array(w.numpy()) for w in model.weights if w.dtype.startswith("float")]

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        decay = min(self.momentum, (1 + self.step) / (10 + self.step))
        weights = [w.numpy() for w in self.model.weights if w.dtype.startswith("float")]
        self.average = [decay * a + (1 - decay) * w for a, w in zip(self.average, weights, strict=True)]


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_weight_ema_inside_the_train_step_equals_the_per_step_callback(archive, steps_per_execution):
    """The same training twice from the same weights: once with the average computed from Python after every
    step, once inside the compiled step (also with several steps per call, as on a TPU)."""
    cfg = config.make_config("smoke", ema=0.9)
    ds = data.load(archive, verify=False)
    x, y = ds.train.x[:96].astype("float32"), np.eye(100, dtype="float32")[ds.train.fine[:96]]
    keras.utils.set_random_seed(0)
    plain = training.compile_model(models.build(cfg, ds.train.x), cfg, 10)
    inside = training.compile_model(models.build(cfg, ds.train.x), cfg, 10, steps_per_execution=steps_per_execution)
    inside.set_weights(plain.get_weights())
    reference, ema = ReferenceEMA(plain, cfg.ema), training.WeightEMA(inside, cfg.ema)
    plain.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[reference])
    inside.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    assert int(ema.step.numpy()) == 6
    for ours, theirs in zip([a.numpy() for a in ema.average], reference.average, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_only_the_nan_check_acts_per_batch_and_one_save_an_epoch(archive, tmp_path):
    """No per-step Python of ours besides the NaN check's counter (the average is in the compiled step), and no
    full-model checkpoint beside the resume state."""
    from keras.src.utils import is_default

    cfg = config.make_config("smoke", ema=0.9)
    ds = data.load(archive, verify=False)
    model = models.build(cfg, ds.train.x)
    fit = epoch_files.attach(training.prepare(model, ds, cfg), model, cfg, RunDir(tmp_path / "run").create(), False)
    per_batch = [n for n, c in fit.callbacks.items() if n != "tensorboard" and not is_default(c.on_train_batch_end)]
    assert per_batch == ["stop_on_nan"] and "checkpoint" not in fit.callbacks


def test_nan_check_reads_the_loss_every_n_batches_and_names_the_range():
    stop = training.StopOnNonFiniteLoss(every=50)
    stop.set_model(keras.Sequential())
    stop.model.stop_training = False
    stop.set_params({"steps": 120})
    reads = []

    class Loss(float):
        def __float__(self):
            reads.append(1)
            return super().__float__()

    stop.on_epoch_begin(2)
    for batch in range(120):
        stop.on_train_batch_end(batch, {"loss": Loss(1.0 if batch < 70 else "nan")})
        if stop.model.stop_training:
            break
    assert len(reads) == 2 and stop.where == "epoch 3, batches 51-100" and batch == 99


def test_one_resume_save_an_epoch_in_two_slots_overwritten_in_place(archive, tmp_path):
    """Three epochs write the two slots (never a new file name, never a deletion: Drive's trash stays empty)."""
    cfg = config.make_config("smoke", epochs=3, ema=0.9)
    ds = data.load(archive, verify=False)
    run = RunDir(tmp_path / "run").create()
    epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    names = sorted(p.name for p in run.backup.iterdir())
    assert names == ["slot-a.ema.npz", "slot-a.weights.h5", "slot-b.ema.npz", "slot-b.weights.h5", "state.json"]
    steps = len(ds.train) // cfg.batch_size
    assert json.loads((run.backup / "state.json").read_text()) == {
        "epoch": 3, "weights": "slot-a.weights.h5", "ema": "slot-a.ema.npz", "iterations": 3 * steps,
        "steps_per_epoch": steps, "global_batch": cfg.batch_size, "replicas": 1, "precision": "float32"}  # fmt: skip
    assert not list(run.root.rglob("*.keras.*")) and not (run.root / "checkpoints" / "last_epoch.keras").exists()


@pytest.mark.parametrize("cpu_bfloat16", [False], indirect=True)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])  # 02 ran on a GPU / on a CPU with bf16
def test_a_model_built_under_another_precision_is_refused_or_rebuilt(cpu_bfloat16, policy, archive, tmp_path):
    cfg = config.make_config("smoke")
    ds = data.load(archive, verify=False)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = models.build(cfg, ds.train.x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    strategy, placement = distribute.place(cfg)  # this runtime: a CPU without bfloat16, float32
    with pytest.raises(RunError, match=f"built in {policy} but this runtime trains in float32") as err:
        training.prepare(model, ds, cfg, strategy, placement)
    assert "models.load(path, precision='float32')" in str(err.value) and "\n" not in str(err.value)
    model.save(tmp_path / "untrained.keras")  # what 03 does with 02's model: rebuilt, same weights, trains
    rebuilt = models.load(tmp_path / "untrained.keras", precision=placement.precision)
    assert models.precision_of(rebuilt) == "float32" and rebuilt.layers[-2].compute_dtype == "float32"
    for a, b in zip(rebuilt.get_weights(), model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert epoch_files.train(rebuilt, ds, cfg, RunDir(tmp_path / "run2").create(), False, strategy, placement)


def test_a_float32_model_on_a_runtime_that_wants_float16_is_refused(archive, tmp_path):
    """The reverse: 02 ran on a CPU, 03 on a GPU with tensor cores (mixed_float16 and a loss-scale wrapper)."""
    cfg = config.make_config("smoke")
    ds = data.load(archive, verify=False)
    model = models.build(cfg, ds.train.x)  # float32
    gpu = distribute.Placement("gpu", 1, "mixed_float16", jit_compile=False, deterministic=False)
    with pytest.raises(RunError, match="built in float32 but this runtime trains in mixed_float16 \\(gpu\\)"):
        training.prepare(model, ds, cfg, placement=gpu)


def test_a_resume_whose_optimizer_state_is_skipped_stops_with_one_line(archive, tmp_path):
    """Keras skips (with a warning) optimizer variables that do not match, e.g. saved under a loss-scale wrapper:
    the schedule would silently restart at step 0."""
    cfg = config.make_config("smoke", epochs=2)
    ds = data.load(archive, verify=False)
    run = RunDir(tmp_path / "run").create()
    epoch_files.train(models.build(cfg, ds.train.x), ds, dataclasses.replace(cfg, epochs=1), run, interactive=False)
    other = dataclasses.replace(cfg, optimizer="adamw")  # a different set of optimizer variables
    with pytest.raises(RunError, match="optimizer's state in .* did not load") as err:
        epoch_files.train(models.build(other, ds.train.x), ds, other, run, interactive=False)
    assert "step 0" in str(err.value) and "\n" not in str(err.value)
