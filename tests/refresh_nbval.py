"""Regenerate the nbval copies in tests/nbval: run the smoke recipe through the pipeline and keep the
executed notebooks, their run directory made relative so that `make test` can re-execute them.

Usage: make nbval-refresh   (or: python -m tests.refresh_nbval)
"""

import tempfile
from pathlib import Path

import nbformat

from cifar100_helpers import config, pipeline

NBVAL_DIR = Path(__file__).parent / "nbval"
RUN_DIR = "../../outputs/nbval-check"  # relative to tests/nbval, where nbval runs the kernel


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = pipeline.run(config.make_config("smoke"), Path(tmp) / "run")
        for name in pipeline.NOTEBOOKS:
            nb = nbformat.read(run.notebook(name), as_version=4)
            for cell in nb.cells:
                if "injected-parameters" in cell.metadata.get("tags", []):
                    cell.source = cell.source.replace(str(run.root), RUN_DIR)
            nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
            nbformat.write(nb, NBVAL_DIR / name)
            print("wrote", NBVAL_DIR / name)


if __name__ == "__main__":
    main()
