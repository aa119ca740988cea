"""Shared fixtures: small datasets written in the real CIFAR-100 on-disk format."""

import importlib.util
import io
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from cifar100_helpers import distribute, generated_data
from cifar100_helpers.running import notebook_runner

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FIRST20 = Path(__file__).parent / "fixtures" / "cifar100_test_first20.npz"


@pytest.fixture(autouse=True)
def float32_policy_after():
    """distribute.place sets Keras's global dtype policy (bfloat16 on this CPU if it has AVX512_BF16): each test
    starts from Keras's default, float32."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


@pytest.fixture
def cpu_bfloat16(request, monkeypatch):
    """A CPU with (param True) or without (False) native bfloat16, whatever this machine has."""

    monkeypatch.setattr(distribute, "cpu_bfloat16", lambda: request.param)
    return request.param


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    """A generated cifar-100-python.tar.gz: 20 train and 5 test images per class."""
    return generated_data.write_archive(tmp_path_factory.mktemp("data") / "cifar-100-python.tar.gz")


@pytest.fixture(scope="session")
def archive_images(archive) -> np.ndarray:
    from cifar100_helpers import data

    return data.load(archive, verify=False).train.x[:64]


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    """No $CIFAR100_DATA and an empty Keras cache, so only what a test provides is found."""
    monkeypatch.delenv("CIFAR100_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path


@pytest.fixture
def offline(isolated_env, monkeypatch):
    """Every download (Keras's weights, the data) fails as it does without network (and nothing is cached)."""

    def fail(*args, **kwargs):
        raise Exception("URL fetch failure: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("keras.utils.get_file", fail)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", fail)
    monkeypatch.setattr("urllib.request.urlopen", no_network)


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def write_members(path: Path, members: dict[str, bytes]) -> Path:
    """A tar.gz holding ``cifar-100-python/<name>`` for each raw member."""
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def read_members(path: Path) -> dict[str, dict]:
    with tarfile.open(path) as tar:
        return {Path(m.name).name: pickle.loads(tar.extractfile(m).read()) for m in tar if m.isfile()}


@pytest.fixture
def rewrite(archive, tmp_path):
    """Write a copy of the generated archive with one member changed by ``edit(member_dict)``."""

    def make(member: str, edit) -> Path:
        members = read_members(archive)
        edit(members[member])
        return write_members(tmp_path / "edited.tar.gz", {k: pickle.dumps(v, protocol=2) for k, v in members.items()})

    return make


@pytest.fixture(scope="session")
def first20():
    with np.load(FIRST20) as f:
        return f["x_test"], f["y_test_fine"]


@pytest.fixture
def fake_notebooks(monkeypatch):
    """Notebooks that do nothing but are recorded; ``fail[name]`` makes one raise instead."""
    calls, fail = [], {}

    def execute(notebook, folder, params, kernel, notebook_dir, output=None):
        calls.append((notebook, params))
        if notebook in fail:
            raise fail[notebook]

    monkeypatch.setattr(notebook_runner, "execute", execute)
    monkeypatch.setattr(notebook_runner, "choose_size", lambda cfg, source: (cfg, None))  # no training: no timing
    return calls, fail


if importlib.util.find_spec("xdist"):  # pytest-xdist, which `make test` runs with --dist loadscope

    def pytest_xdist_make_scheduler(config, log):
        """Each test file in one worker (its module fixtures made once), as --dist loadscope does, and the nbval
        notebooks all in one worker, in order, each on its own kernel: each reads what the one before wrote into
        outputs/nbval/."""
        from xdist.scheduler import LoadScopeScheduling

        class NotebooksTogether(LoadScopeScheduling):
            def _split_scope(self, nodeid):
                return "tests/nbval" if nodeid.startswith("tests/nbval/") else super()._split_scope(nodeid)

        return NotebooksTogether(config, log)
