"""Model checkpoints as safetensors plus a JSON sidecar: nothing is ever unpickled.

Every file carries its size and sha256 (a checkpoint's in its sidecar, a cache entry's in its
``manifest.json``), so a truncated, flipped or swapped file is found before it is loaded: a
checkpoint then fails with one line, and a cache entry is discarded and retrained.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from secbench.errors import SecbenchError
from secbench.registry import create_model


def save(model: nn.Module, stem: str | Path, *, name: str, **build: Any) -> Path:
    """Write ``stem.safetensors`` (weights) and ``stem.json`` (registry name and build kwargs)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = stem.with_suffix(".safetensors")
    save_file(state, str(weights))
    sidecar = {"model": name, "build": build, "weights": digest(weights)}
    stem.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return weights


def load(stem: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model named in ``stem.json`` and load ``stem.safetensors`` into it (strictly)."""
    stem = Path(stem)
    try:
        sidecar = json.loads(stem.with_suffix(".json").read_text())
        weights = stem.with_suffix(".safetensors")
        if not isinstance(sidecar, dict) or sidecar.get("weights") != digest(weights):
            raise SecbenchError(f"checkpoint {weights} does not match the size and sha256 in {stem.with_suffix('.json')}"
                                "; it is damaged or was replaced: retrain it or restore both files")
        state = load_file(str(weights), device=str(device))
        model = create_model(sidecar["model"], **sidecar["build"])
        model.load_state_dict(state, strict=True)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, SafetensorError,
            RuntimeError) as exc:
        raise SecbenchError(f"cannot load checkpoint {stem}: {exc}") from exc
    return model.to(device).eval()


def write_json(path: Path, payload: Any) -> Path:
    """JSON next to a checkpoint (histories, metadata); NaN is kept as JSON's ``NaN`` literal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SecbenchError(f"cannot read {path}: {exc}") from exc


def save_entry(entry: Path, model: nn.Module, history: Any, *, name: str, **build: Any) -> None:
    """Cache a registry model (``entry/model.*``) and its training ``history`` as one folder (see :func:`_publish`)."""
    _publish(entry, history, lambda staging: save(model, staging / "model", name=name, **build))


def load_entry(entry: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Any] | None:
    """The ``(model, history)`` :func:`save_entry` cached in ``entry``, or None when there is none yet."""
    if not intact(entry):
        return None
    return load(entry / "model", device), read_json(entry / "history.json")


def save_modules(entry: Path, modules: dict[str, nn.Module], history: Any) -> None:
    """Cache networks the caller rebuilds itself (a watermark's embedder and extractor, not registry models)
    as ``entry/<name>.safetensors`` plus ``entry/history.json``, as one folder (see :func:`_publish`)."""

    def write(staging: Path) -> None:
        staging.mkdir(parents=True, exist_ok=True)
        for name, module in modules.items():
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(staging / f"{name}.safetensors"))

    _publish(entry, history, write)


def load_modules(entry: Path, modules: dict[str, nn.Module], device: torch.device | str = "cpu") -> Any | None:
    """Load what :func:`save_modules` cached in ``entry`` into the (already built) ``modules``, strictly,
    in eval mode on ``device``, and return the history; None when there is no entry yet."""
    if not intact(entry):
        return None
    for name, module in modules.items():
        try:
            module.load_state_dict(load_file(str(entry / f"{name}.safetensors"), device=str(device)), strict=True)
        except (OSError, SafetensorError, RuntimeError) as exc:
            raise SecbenchError(f"cannot load cached weights {entry / name}: {exc}") from exc
        module.to(device).eval()
    return read_json(entry / "history.json")


def _publish(entry: Path, history: Any, write: Callable[[Path], Any]) -> None:
    """``write`` the entry into a temporary folder, add the history, and rename it into place, so that a
    concurrent or interrupted run never sees half an entry; when another process publishes the same entry
    first, theirs is kept (the same key means the same content)."""
    staging = entry.with_name(f"{entry.name}.tmp{time.time_ns()}")
    try:
        write(staging)
        write_json(staging / "history.json", history)
        write_json(staging / MANIFEST, {f.name: digest(f) for f in sorted(staging.iterdir())})
    except BaseException:  # a full disk or an interrupt: no half-written staging folder stays behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


MANIFEST = "manifest.json"


def digest(path: Path) -> dict[str, Any]:
    """Size and sha256 of a file, as sidecars and manifests record them."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return {"bytes": Path(path).stat().st_size, "sha256": sha.hexdigest()}


def intact(entry: Path) -> bool:
    """Whether the cache ``entry`` exists with every file its manifest lists, unchanged. A damaged entry is
    removed with a one-line warning, so the caller retrains it (a cache is only ever a shortcut)."""
    if not entry.exists():
        return False
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = {f.name for f in entry.iterdir()} - {MANIFEST}
        if not isinstance(manifest, dict) or set(manifest) != files:
            problem = "its files are not those of its manifest"
        else:
            problem = next((f"{name} differs from its manifest" for name, expected in sorted(manifest.items())
                            if digest(entry / name) != expected), "")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"no readable manifest ({type(exc).__name__})"
    if not problem:
        return True
    warnings.warn(f"cache entry {entry} is damaged ({problem}); it is discarded and retrained", stacklevel=3)
    shutil.rmtree(entry, ignore_errors=True)
    return False
