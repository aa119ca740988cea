"""An ipykernel that Colab's detection recognises: google.colab imported at start and a shell of class
google.colab._shell.Shell (``python colab_kernel.py -f CONNECTION_FILE``)."""

import google.colab  # noqa: F401  (a Colab kernel has it imported)
from google.colab import _shell
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets import Type


class ColabKernel(IPythonKernel):
    shell_class = Type(_shell.Shell)


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=ColabKernel)
