"""Regenerate the nbval copies in tests/nbval: run the smoke recipe through the pipeline and keep the
executed notebooks, their run directory made relative so that `make test` can re-execute them.

Usage: make nbval-refresh   (or: python -m tests.refresh_nbval)
"""

import tempfile
from pathlib import Path

import nbformat

from cifar100_helpers import config
from cifar100_helpers.running import notebook_runner

NBVAL_DIR = Path(__file__).parent / "nbval"
OUTPUTS_DIR = "../../outputs/nbval"  # relative to tests/nbval, where nbval runs the kernel
RUN_DIR = f"{OUTPUTS_DIR}/run"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = notebook_runner.run(config.make_config("smoke"), Path(tmp) / "run")
        notebook_runner.compare(Path(tmp))
        executed = [run.notebook(n) for n in notebook_runner.NOTEBOOKS]
        executed.append(Path(tmp) / "compare" / notebook_runner.COMPARE_NOTEBOOK)
        for path in executed:
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                if "injected-parameters" in cell.metadata.get("tags", []):
                    cell.source = cell.source.replace(str(run.root), RUN_DIR).replace(str(Path(tmp)), OUTPUTS_DIR)
            nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
            nbformat.write(nb, NBVAL_DIR / path.name)
            print("wrote", NBVAL_DIR / path.name)


if __name__ == "__main__":
    main()
