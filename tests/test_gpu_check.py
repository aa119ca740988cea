import json

import pytest

from cifar100_helpers.commands import cli, gpu_check


def test_gpu_check_refuses_a_machine_without_gpu(tmp_path, capsys):
    assert cli.main(["gpu-check", "--output", str(tmp_path / "check.json")]) == 2
    assert "TensorFlow sees none here" in capsys.readouterr().err
    assert not (tmp_path / "check.json").exists()


@pytest.mark.slow
def test_gpu_check_gathers_bench_and_a_run_into_one_json(tmp_path, monkeypatch):
    """The same orchestration as on a GPU, with the GPU requirement lifted and small recipes."""
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "check.json"
    gpu_check.run(output, [], recipes=["smoke"], run_recipe="smoke", epochs=1, require_gpu=False)
    result = json.loads(output.read_text())
    assert result["bench_step"]["exit_code"] == 0 and result["bench"][0]["recipe"] == "smoke"
    assert result["run_step"]["exit_code"] == 0 and result["run_manifest"]["status"] == "completed"
    assert "top1" in result["run_metrics"] and result["run_history"].startswith("epoch,")
    assert result["hardware"]["cpu_cores"] >= 1
    with pytest.raises(Exception, match="already exists"):
        gpu_check.run(output, [], require_gpu=False)
