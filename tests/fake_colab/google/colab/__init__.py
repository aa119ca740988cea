"""A stand-in for Colab's google.colab package (see tests/fake_colab/README.md)."""
