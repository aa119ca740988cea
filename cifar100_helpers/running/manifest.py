"""What a run needs to be reproduced: config, package versions, hardware, git state, times."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ..files import write_json

PACKAGES = ("tensorflow", "keras", "numpy", "matplotlib", "papermill", "nbconvert", "ipykernel", "cifar100-helpers")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo: Path) -> dict:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "uncommitted_changes": bool(status) if status is not None else None}


def write(path: Path, **fields) -> dict:
    """Merge ``fields`` into the manifest at ``path`` (created if missing) and return it."""
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(fields)
    write_json(path, manifest, default=str)  # on a full disk, in place if it fits: a failure is still recorded
    return manifest


def describe_placement(path: Path) -> str:
    """One line on what a run trained on, from its run.json."""
    record = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    hw, t = record.get("hardware", {}), record.get("training", {})
    device = ", ".join(hw.get("gpus") or []) or f"{hw.get('cpu', '?')} ({hw.get('cpu_cores', '?')} cores)"
    if hw.get("onednn_settings"):  # a capped or switched-off oneDNN: what forced float32 on a bfloat16 CPU
        device += " with " + ", ".join(f"{name}={value}" for name, value in hw["onednn_settings"].items())
    if not t:
        return f"Trained on {device}."
    ema = f", weight EMA {t['ema']['momentum']:g} (with warm-up)" if t.get("ema") else ""
    return (
        f"Trained on {device}: {t['kind']}, {t['replicas']} replica(s), {t['precision']}, XLA {t['jit_compile']}, "
        f"batch {t['per_replica_batch']} per replica ({t['global_batch']} global), peak learning rate "
        f"{t['peak_learning_rate']:g} ({t['rule']} scaling), {t['images_left_out_per_epoch']} images left out "
        f"of each epoch by the last partial batch{ema}, "
        f"{'deterministic' if t['deterministic'] else 'not deterministic'}."
    )
