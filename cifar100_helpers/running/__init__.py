"""Running and operating runs: the papermill notebook runner and its Jupyter kernel, run directories
and their files (manifest, history, progress), Colab, and the report's text."""
