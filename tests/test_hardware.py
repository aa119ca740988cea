import json
import subprocess
import sys
import textwrap

from cifar100_helpers import config, hardware

from .conftest import REPO


def test_scaling_with_replicas():
    assert hardware.scaled(128, 0.1, 4) == (512, 0.4)
    assert hardware.scaled(256, 0.2, 1) == (256, 0.2)


def test_multi_worker_needs_several_workers(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker"}}))
    assert hardware.multi_worker()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}}))
    assert not hardware.multi_worker()
    monkeypatch.setenv("TF_CONFIG", "not json")
    assert not hardware.multi_worker()


def test_cpu_placement_is_float32_default_strategy():
    strategy, placement = hardware.place(config.make_config("cpu"))
    assert placement.kind == "cpu" and placement.replicas == 1 and placement.precision == "float32"
    assert strategy.num_replicas_in_sync == 1


def test_mirrored_strategy_training_step_on_two_logical_cpus():
    """A real training step under MirroredStrategy with two logical CPU devices (fresh process:
    logical devices must be configured before TensorFlow starts its runtime)."""
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from cifar100_helpers import config, data, models, training
        from cifar100_helpers.generated_data import write_archive
        import tempfile, pathlib
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        cfg = config.make_config("smoke", batch_size=16)
        with tempfile.TemporaryDirectory() as tmp:
            ds = data.load(write_archive(pathlib.Path(tmp) / "d.tar.gz", 4, 1), verify=False)
        with strategy.scope():
            model = models.build(cfg, ds.train.x)
            training.compile_model(model, cfg, steps_per_epoch=4)
        before = [w.copy() for w in model.get_weights()]
        batches = data.train_dataset(ds.train, 16 * strategy.num_replicas_in_sync, cfg)
        model.fit(batches.take(2), epochs=1, verbose=0)
        changed = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        print("REPLICAS", strategy.num_replicas_in_sync, "CHANGED", changed)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert "REPLICAS 2 CHANGED True" in done.stdout, done.stderr[-2000:]
