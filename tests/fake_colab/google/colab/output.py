"""Colab proxies a kernel's port to the browser; here each request is only printed."""


def serve_kernel_port_as_window(port, path="/", anchor_text=None):
    print(f"[fake colab] window on port {port}{path}")


def serve_kernel_port_as_iframe(port, path="/", height=400):
    print(f"[fake colab] iframe on port {port}{path}")
