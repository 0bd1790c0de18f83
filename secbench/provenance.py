"""What a result was produced with: versions, code revision, hardware."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

import secbench
from secbench import registry


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit sha, dirty?) of the checkout secbench runs from; (None, None) for an installed wheel."""
    root = Path(secbench.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip() != ""
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def collect(device: torch.device) -> dict[str, Any]:
    """Provenance fields of the results record (the dataset fingerprint is added by the runner)."""
    sha, dirty = git_state()
    return {
        "secbench": secbench.__version__,
        "git_sha": sha,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "torchvision": _version("torchvision"),
        "torchattacks": _version("torchattacks"),
        "albumentations": _version("albumentations"),
        "numpy": _version("numpy"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "deterministic": device.type == "cpu",
        "plugins": registry.loaded_plugins(),
    }
