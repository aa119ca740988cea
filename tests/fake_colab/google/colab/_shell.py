"""Colab's IPython shell class lives in google.colab._shell: notebooks recognise Colab by its name."""

from ipykernel.zmqshell import ZMQInteractiveShell


class Shell(ZMQInteractiveShell):
    pass
