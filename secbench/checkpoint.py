"""Model checkpoints as safetensors plus a JSON sidecar: nothing is ever unpickled."""

from __future__ import annotations

import json
import shutil
import time
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
    save_file(state, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(json.dumps({"model": name, "build": build}, indent=2, sort_keys=True))
    return stem.with_suffix(".safetensors")


def load(stem: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model named in ``stem.json`` and load ``stem.safetensors`` into it (strictly)."""
    stem = Path(stem)
    try:
        sidecar = json.loads(stem.with_suffix(".json").read_text())
        state = load_file(str(stem.with_suffix(".safetensors")), device=str(device))
        model = create_model(sidecar["model"], **sidecar["build"])
        model.load_state_dict(state, strict=True)
    except (OSError, json.JSONDecodeError, KeyError, SafetensorError, RuntimeError) as exc:
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
    if not (entry / "model.json").exists():
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
    if not (entry / "history.json").exists():
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
    write(staging)
    write_json(staging / "history.json", history)
    try:
        staging.rename(entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
