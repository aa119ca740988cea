"""Run what the package chooses on accelerator hardware, simulated on this CPU, in a fresh process
(logical devices must be configured before TensorFlow starts): ``python -m tests.simulate_placement KIND``.

KIND is gpu (one GPU, tensor cores), old_gpu (one GPU without), multi_gpu (two GPUs), tpu, or
bench3 (bench at three GPUs). The GPUs are logical CPU devices that ``distribute.logical_gpus``
reports as GPUs; XLA then compiles for the CPU (XLA:CPU) and mixed precision runs in float16 or
bfloat16 on it. Nothing here chooses a setting: ``distribute.place`` does, and the real training
loop (or bench) runs with what it chose. Prints one JSON line."""

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import tensorflow as tf

DEVICES = {"gpu": 1, "old_gpu": 1, "multi_gpu": 2, "tpu": 1, "bench3": 3, "fewer_replicas": 2}


def main(kind: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES[kind])

    from cifar100_helpers import config, data, distribute, models
    from cifar100_helpers.commands import bench
    from cifar100_helpers.generated_data import write_archive
    from cifar100_helpers.running import epoch_files
    from cifar100_helpers.running.run_dir import RunDir

    fake_gpus = tf.config.list_logical_devices("CPU")
    distribute.logical_gpus = lambda: [] if kind == "tpu" else fake_gpus
    distribute.gpu_capability = lambda: (6, 1) if kind in ("old_gpu", "bench3") else (8, 0)
    if kind == "tpu":  # no TPUStrategy on a CPU: the default strategy with what place() picks for a TPU
        distribute.pick_strategy = lambda: (tf.distribute.get_strategy(), "tpu")

    with tempfile.TemporaryDirectory() as tmp:
        archive = write_archive(Path(tmp) / "c100.tar.gz", train_per_class=30 if kind == "bench3" else 8)
        ds = data.load(archive, verify=False)
        if kind == "bench3":
            result = bench.run(["scratch"], ds, steps=1, warmup=1)
            print(json.dumps(result["recipes"][0]))
            return
        if kind == "fewer_replicas":  # two GPUs train an epoch, then a runtime with one resumes
            print(json.dumps({"refused": fewer_replicas(ds, Path(tmp) / "run")}))
            return
        cfg = config.make_config("smoke", epochs=2, batch_size=16, ema=0.9)  # EMA on mirrored variables too
        strategy, placement = distribute.place(cfg)
        run = RunDir(Path(tmp) / "run").create()
        with strategy.scope():
            model = models.build(cfg, ds.train.x)
        history = epoch_files.train(model, ds, cfg, run, False, strategy, placement)
        record = json.loads(run.manifest.read_text())["training"]
        first_dense = next(w for w in model.weights if "kernel" in w.path and "probabilities" not in w.path)
        print(json.dumps({**record, "epochs": [r["epoch"] for r in history], "loss": history[-1]["loss"],
                          "variable_dtype": first_dense.dtype,
                          "compute_dtype": model.layers[-2].compute_dtype}))  # fmt: skip


def fewer_replicas(ds, folder: Path) -> str:
    from cifar100_helpers import config, distribute, models
    from cifar100_helpers.errors import RunError
    from cifar100_helpers.running import epoch_files
    from cifar100_helpers.running.run_dir import RunDir

    cfg = config.make_config("smoke", epochs=2, batch_size=16)
    run = RunDir(folder).create()
    strategy, placement = distribute.place(dataclasses.replace(cfg, epochs=1))
    with strategy.scope():
        model = models.build(cfg, ds.train.x)
    epoch_files.train(model, ds, dataclasses.replace(cfg, epochs=1), run, False, strategy, placement)
    distribute.logical_gpus = lambda: []  # the next runtime has one device
    strategy, placement = distribute.place(cfg)
    try:
        epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, False, strategy, placement)
    except RunError as exc:
        return str(exc)
    return "not refused"


if __name__ == "__main__":
    main(sys.argv[1])
