"""Google Drive: ``mount`` links the mount point to $FAKE_COLAB_DRIVE (a folder holding MyDrive/), refusing a mount
point that already holds files as Colab does."""

import os
from pathlib import Path


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    point, drive = Path(mountpoint), Path(os.environ["FAKE_COLAB_DRIVE"])
    if point.is_symlink() or point.exists():
        raise ValueError("Mountpoint must not already contain files")
    (drive / "MyDrive").mkdir(parents=True, exist_ok=True)
    point.parent.mkdir(parents=True, exist_ok=True)
    point.symlink_to(drive, target_is_directory=True)
    print(f"Mounted at {mountpoint}")
