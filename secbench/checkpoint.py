"""Model checkpoints as safetensors plus a JSON sidecar: nothing is ever unpickled."""

from __future__ import annotations

import json
import shutil
import time
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
    """Cache ``model`` (``entry/model.*``) and its training ``history`` (``entry/history.json``) as one folder.

    It is written to a temporary folder that is renamed into place, so a concurrent or interrupted run
    never sees half an entry; when another process publishes the same entry first, theirs is kept.
    """
    staging = entry.with_name(f"{entry.name}.tmp{time.time_ns()}")
    save(model, staging / "model", name=name, **build)
    write_json(staging / "history.json", history)
    try:
        staging.rename(entry)
    except OSError:  # the entry exists: the same key means an identical model
        shutil.rmtree(staging, ignore_errors=True)


def load_entry(entry: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Any] | None:
    """The ``(model, history)`` :func:`save_entry` cached in ``entry``, or None when there is none yet."""
    if not (entry / "model.json").exists():
        return None
    return load(entry / "model", device), read_json(entry / "history.json")


def save_weights(modules: dict[str, nn.Module], folder: Path) -> None:
    """Write each module's weights to ``folder/<name>.safetensors`` (for networks the caller rebuilds
    itself, such as a watermark's embedder and extractor, rather than through the model registry)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(folder / f"{name}.safetensors"))


def load_weights(modules: dict[str, nn.Module], folder: Path, device: torch.device | str = "cpu") -> None:
    """Load ``folder/<name>.safetensors`` into each (already built) module, strictly, on ``device``."""
    for name, module in modules.items():
        try:
            module.load_state_dict(load_file(str(folder / f"{name}.safetensors"), device=str(device)), strict=True)
        except (OSError, SafetensorError, RuntimeError) as exc:
            raise SecbenchError(f"cannot load cached weights {folder / name}: {exc}") from exc
        module.to(device).eval()


def publish(staging: Path, entry: Path) -> None:
    """Rename a fully written ``staging`` folder to ``entry``; if another process published the same
    entry first, keep theirs (the same key means the same content)."""
    try:
        staging.rename(entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
