import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from cifar100_helpers import config, distribute, machine
from cifar100_helpers.errors import ConfigError

from .conftest import REPO

TRAIN_IMAGES = 45_000


@pytest.mark.parametrize("replicas", [1, 2, 4, 8])
@pytest.mark.parametrize("recipe", ["cpu", "scratch", "transfer", "seed"])
def test_scaling_keeps_batch_and_steps_sane(recipe, replicas):
    """Faked replica counts: the global batch never passes the recipe's cap, each epoch keeps
    enough steps, the learning rate follows the global batch (linear for SGD, sqrt for adaptive)."""
    cfg = config.make_config(recipe)
    s = distribute.scale(cfg, replicas)
    assert s.global_batch == s.per_replica_batch * replicas
    assert s.global_batch <= max(cfg.max_global_batch, cfg.batch_size)
    assert TRAIN_IMAGES // s.global_batch >= 40  # steps per epoch
    ratio = s.global_batch / cfg.batch_size
    expected = ratio**0.5 if cfg.optimizer in ("adamw", "rmsprop") else ratio
    assert s.peak_learning_rate == pytest.approx(cfg.learning_rate * expected)
    if replicas == 1:
        assert (s.global_batch, s.peak_learning_rate) == (cfg.batch_size, cfg.learning_rate)


def test_scaling_examples():
    assert distribute.scale(config.make_config("scratch"), 8).to_dict() == {
        "per_replica_batch": 128, "global_batch": 1024, "peak_learning_rate": 0.4, "rule": "linear",
    }  # fmt: skip
    transfer = distribute.scale(config.make_config("transfer"), 8)
    assert (transfer.per_replica_batch, transfer.global_batch, transfer.rule) == (32, 256, "sqrt")
    assert transfer.peak_learning_rate == pytest.approx(4e-4)
    assert distribute.scale(config.make_config("cpu", batch_size=2048), 1).global_batch == 2048  # one replica: as set


def test_xla_only_on_one_gpu():
    assert distribute.jit_for("gpu", deterministic=False) is True
    for kind in ("cpu", "multi_gpu", "tpu"):
        assert distribute.jit_for(kind, deterministic=False) is False
    assert distribute.jit_for("gpu", deterministic=True) is False


def test_a_cluster_tf_config_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker"}}))
    with pytest.raises(ConfigError, match="cluster of 2 machines.*sweep --address") as err:
        distribute.place(config.make_config("smoke"))
    assert "\n" not in str(err.value)
    for harmless in (json.dumps({"cluster": {"worker": ["a:1"]}}), "not json", "[]", ""):
        monkeypatch.setenv("TF_CONFIG", harmless)
        assert distribute.cluster_size() <= 1
        distribute.refuse_multi_worker()


@pytest.mark.parametrize("cpu_bfloat16", [True, False], indirect=True)
def test_cpu_placement_is_bfloat16_where_the_cpu_has_it(cpu_bfloat16):
    strategy, placement = distribute.place(config.make_config("cpu"))
    assert placement.kind == "cpu" and placement.replicas == 1 and strategy.num_replicas_in_sync == 1
    assert placement.precision == ("mixed_bfloat16" if cpu_bfloat16 else "float32")
    assert keras.mixed_precision.global_policy().name == placement.precision
    assert placement.jit_compile is False  # XLA:CPU trains the cpu net at about half oneDNN's speed
    _, placement = distribute.place(config.make_config("cpu", mixed_precision=False))  # --float32
    assert placement.precision == "float32"


@pytest.mark.parametrize(
    "arch, flags, onednn, cap, expected",
    [
        ("x86_64", {"avx512f", "avx512_bf16"}, None, None, True),
        ("x86_64", {"avx512f", "amx_bf16", "amx_tile"}, None, None, True),
        ("x86_64", {"avx512f", "avx512_vnni"}, None, None, False),  # AVX512 without bf16: emulated, slower
        ("x86_64", {"avx512_bf16"}, "0", None, False),  # oneDNN turned off: TensorFlow's own kernels emulate it
        ("aarch64", {"bf16"}, None, None, False),
        ("x86_64", {"avx512_bf16", "amx_bf16"}, None, "AVX2", False),  # oneDNN capped: its bf16 convs fail
        ("x86_64", {"avx512_bf16", "amx_bf16"}, None, "avx512_core", False),
        ("x86_64", {"avx512_bf16", "amx_bf16"}, None, "AVX512_CORE_BF16", True),  # an AMX Xeon as an EPYC
        ("x86_64", {"avx512_bf16", "amx_bf16"}, None, "AVX512_CORE_AMX", True),
        ("x86_64", {"avx512_bf16"}, None, "NONSENSE", False),  # unknown: the safe choice
        ("x86_64", {"avx512_bf16"}, "false", None, False),  # TensorFlow reads "false" as off too
    ],
)
def test_cpu_bfloat16_is_detected_not_assumed(monkeypatch, arch, flags, onednn, cap, expected):
    monkeypatch.setattr(machine.platform, "machine", lambda: arch)
    monkeypatch.setattr(machine.platform, "system", lambda: "Linux")
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    for name, value in (("TF_ENABLE_ONEDNN_OPTS", onednn), ("ONEDNN_MAX_CPU_ISA", cap)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert machine.cpu_bfloat16() is expected
    assert (machine.bfloat16_off_reason() is None) is expected
    assert machine.describe()["cpu_bfloat16"] is expected


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse2 avx512f amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")  # fmt: skip
    monkeypatch.setattr(machine, "Path", lambda path: cpuinfo if path == "/proc/cpuinfo" else Path(path))
    assert machine.cpu_flags() == {"fpu", "sse2", "avx512f", "amx_bf16"}  # the first CPU's line
    monkeypatch.setattr(machine, "Path", lambda path: tmp_path / "absent")
    assert machine.cpu_flags() == set()


@pytest.fixture
def no_tpu_env(monkeypatch):
    for name in ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(machine.glob, "glob", lambda pattern: [])
    return monkeypatch


def test_tpu_detection(no_tpu_env):
    assert machine.tpu_address() is None
    no_tpu_env.setattr(machine.glob, "glob", lambda pattern: ["/dev/accel0"] if "accel" in pattern else [])
    assert machine.tpu_address() == "local"  # a TPU VM (Colab's TPU runtimes, Cloud TPU VMs)
    no_tpu_env.setattr(machine.glob, "glob", lambda pattern: [])
    no_tpu_env.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    assert machine.tpu_address() == "grpc://10.0.0.2:8470"  # an older remote TPU node


def test_a_blank_tpu_name_is_no_tpu(no_tpu_env):
    no_tpu_env.setenv("TPU_NAME", " ")
    no_tpu_env.setenv("COLAB_TPU_ADDR", "")
    assert machine.tpu_address() is None


def test_an_unknown_isa_cap_is_named_as_unknown(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(machine.platform, "system", lambda: "Linux")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx_512")
    assert "is not a value oneDNN knows" in machine.bfloat16_off_reason()


def test_dev_vfio_alone_is_not_a_tpu(no_tpu_env, tmp_path):
    """GPU-passthrough and DPDK hosts have /dev/vfio groups too: only a Google PCI device makes it a TPU."""
    no_tpu_env.setattr(machine.glob, "glob", lambda pattern: ["/dev/vfio/0"] if "vfio" in pattern else [])
    for device, vendor in (("0000:00:04.0", "0x10de"), ("0000:00:05.0", "0x8086")):  # NVIDIA, Intel
        (tmp_path / device).mkdir()
        (tmp_path / device / "vendor").write_text(vendor + "\n")
    no_tpu_env.setattr(machine, "PCI_DEVICES", tmp_path)
    assert machine.tpu_address() is None
    (tmp_path / "0000:00:06.0").mkdir()
    (tmp_path / "0000:00:06.0" / "vendor").write_text("0x1ae0\n")  # Google: a TPU v5e or later
    assert machine.tpu_address() == "local"


def test_a_tpu_that_does_not_start_stops_the_run(no_tpu_env):
    """A detected TPU that fails to start is one clear line, never a silent fall-back to the CPU recipe."""
    no_tpu_env.setenv("TPU_ACCELERATOR_TYPE", "v5litepod-8")
    with pytest.raises(ConfigError, match=r"A TPU was found \(local\) but TensorFlow could not start it") as err:
        distribute.pick_strategy()
    assert "\n" not in str(err.value)
    assert config.resolve_recipe("auto") == "transfer"


def simulate(kind: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.simulate_placement", kind], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "kind, expected",
    [
        (
            "multi_gpu",
            {
                "kind": "multi_gpu",
                "replicas": 2,
                "precision": "mixed_float16",
                "jit_compile": False,
                "steps_per_execution": 1,  # 8 fails there (distribute.STEPS_PER_EXECUTION)
            },
        ),
        (
            "gpu",
            {
                "kind": "gpu",
                "replicas": 1,
                "precision": "mixed_float16",
                "jit_compile": True,
                "steps_per_execution": 8,
            },  # fmt: skip
        ),
        ("old_gpu", {"kind": "gpu", "replicas": 1, "precision": "float32", "jit_compile": True}),
        (
            "tpu",
            {
                "kind": "tpu",
                "replicas": 1,
                "precision": "mixed_bfloat16",
                "jit_compile": False,
                "steps_per_execution": 32,
            },
        ),
    ],
)
def test_training_runs_with_what_place_picks(kind, expected):
    """Two logical CPU devices as two GPUs (MirroredStrategy), one as a GPU (XLA:CPU, float16), a
    TPU's choices on the default strategy: place() picks, and the real training loop (with weight EMA
    on the strategy's variables, the NaN check and the history) runs two epochs with exactly that, several steps a
    call on GPUs and TPUs."""
    record = simulate(kind)
    assert {k: record[k] for k in expected} == expected
    assert record["epochs"] == [1, 2] and record["loss"] < 4.7
    assert record["variable_dtype"] == "float32"
    assert record["compute_dtype"] == {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(
        expected["precision"], "float32"
    )
    assert record["global_batch"] == 16 * expected["replicas"]


@pytest.mark.slow  # make test-slow: heavy
def test_bench_at_three_replicas():
    """scratch at 3 replicas used to ask for 3 x 1024 images of a 2,700-image set (StopIteration)."""
    row = simulate("bench3")
    assert row["placement"]["replicas"] == 3 and row["global_batch_size"] == 1023
    assert row["train_images_per_second"] > 0 and row["input_pipeline_images_per_second_per_core"] > 0
