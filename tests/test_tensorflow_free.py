"""The processes that only orchestrate (the command line, the papermill runner, compare, a sweep's driver) never
load TensorFlow: on a TPU machine the first process to load it holds the TPU until it exits, and then the notebook
kernels that train could not have it. Each case runs in a fresh interpreter, so sys.modules starts empty."""

import json
import subprocess
import sys
import textwrap

import pytest

from cifar100_helpers.generated_data import write_archive

from .conftest import REPO
from .test_compare import fake_run

NO_TENSORFLOW = "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted(m for m in sys.modules if 'tensor' in m)"


def fresh(script: str, tmp_path) -> subprocess.CompletedProcess:
    code = textwrap.dedent(script).replace("CHECK", NO_TENSORFLOW)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_importing_the_package_loads_no_tensorflow(tmp_path):
    fresh("import sys, cifar100_helpers\nCHECK", tmp_path)


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["run", "--help"], ["compare", "--help"]])
def test_help_loads_no_tensorflow(tmp_path, argv):
    fresh(f"""
        import sys
        from cifar100_helpers.commands import cli
        try:
            cli.main({argv!r})
        except SystemExit:
            pass
        CHECK
    """, tmp_path)  # fmt: skip


def test_run_orchestration_up_to_the_first_kernel_loads_no_tensorflow(tmp_path):
    """``run --recipe auto`` (the recipe chosen for this machine), the data check, the run directory, run.json with
    the hardware: all before a kernel starts, without TensorFlow; the kernels themselves are stood in for."""
    write_archive(tmp_path / "c100.tar.gz")
    done = fresh(f"""
        import sys
        from cifar100_helpers.commands import cli
        from cifar100_helpers.running import notebook_runner

        def kernel_starts(notebook, *args, **kwargs):
            CHECK
            print("kernel would start:", notebook)

        notebook_runner.execute = kernel_starts
        notebook_runner.write_report = lambda *a, **k: None
        assert cli.main(["run", "--recipe", "auto", "--output", "run", "--data", {str(tmp_path / 'c100.tar.gz')!r},
                         "--no-verify"]) == 0
        CHECK
    """, tmp_path)  # fmt: skip
    assert done.stdout.count("kernel would start:") == 4
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "completed" and record["hardware"]["cpu_cores"] and record["config"]["recipe"] == "cpu"


def test_compare_loads_no_tensorflow_in_its_own_process(tmp_path):
    fake_run(tmp_path, "a", "cpu", 0.6)
    fresh(f"""
        import sys
        from cifar100_helpers.commands import cli
        from cifar100_helpers.running import notebook_runner
        notebook_runner.execute = lambda *a, **k: None  # notebook 05's kernel is another process
        notebook_runner.export_html = lambda *a: a[2]
        notebook_runner.os.replace = lambda *a: None
        assert cli.main(["compare", "--outputs", {str(tmp_path)!r}]) == 0
        CHECK
    """, tmp_path)  # fmt: skip


def test_tensorflow_imported_later_is_quiet_and_works(tmp_path):
    done = fresh("""
        import sys
        import cifar100_helpers
        from cifar100_helpers import models
        import tensorflow as tf
        print(tf.constant(2) * 21)
    """, tmp_path)  # fmt: skip
    assert "42" in done.stdout and "cuInit" not in done.stderr and "oneDNN" not in done.stderr, done.stderr


def test_gpu_check_orchestration_loads_no_tensorflow(tmp_path):
    """gpu-check asks a child process whether TensorFlow sees a GPU (here the child loads TensorFlow and says yes),
    then starts each part as its own command (stood in for): its own process never loads TensorFlow."""
    done = fresh("""
        import sys
        from cifar100_helpers.commands import cli, gpu_check

        gpu_check.GPU_PROBE = "import sys, tensorflow; sys.exit(0)"
        gpu_check.step = lambda args, log: {"command": " ".join(args[2:]), "exit_code": 0, "wall_seconds": 0}
        assert cli.main(["gpu-check", "--output", "check.json"]) == 0
        CHECK
    """, tmp_path)  # fmt: skip
    assert "Saved" in done.stdout and json.loads((tmp_path / "check.json").read_text())["run_step"]["exit_code"] == 0


def test_help_works_without_fcntl():
    """Native Windows has no fcntl: the package imports and --help answers; only a lock says it needs WSL."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from cifar100_helpers.commands import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit as e:\n    print('exit', e.code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and "exit 0" in done.stdout, done.stderr[-2000:]
