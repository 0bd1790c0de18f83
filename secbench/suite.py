"""Suites: a YAML file that expands to a grid of runs of one scenario, and the state of each run in a store.

A suite names a scenario, fixed ``options``, a ``grid`` (option → list of values, crossed), an
explicit ``runs`` list (each an option mapping), and ``seeds``::

    scenario: watermark
    preset: quick
    options: {dataset: patches}
    grid: {method: [baseline, structure], attack: [none, crop, rotate, resize]}
    seeds: [0, 1, 2]

Every run is resolved, validated and hashed before any starts (a bad key or value is one error naming
it), so the same config hashes that key the results store say which runs are done.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from secbench import registry, store
from secbench.config import PRESETS, field_types, option_flag
from secbench.errors import SecbenchError, UnknownNameError
from secbench.runner import RunSpec

SUITE_KEYS = ("scenario", "preset", "options", "grid", "runs", "seeds", "device")
STATES = ("done", "failed", "running", "pending")
MAX_SUITE_BYTES = 2**20


@dataclass(frozen=True)
class Suite:
    scenario: str
    preset: str
    combos: tuple[dict[str, Any], ...]  # the option overrides of each grid point and listed run
    seeds: tuple[int, ...]
    device: str = "auto"


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; every problem is a one-line :class:`SecbenchError` naming its key."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SUITE_BYTES:
            raise SecbenchError(f"{path} is larger than 1 MiB; a suite file is a short grid")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SecbenchError(f"cannot read suite file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SecbenchError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise SecbenchError(f"{path}: not valid YAML: {' '.join(str(exc).split())[:200]}") from exc
    return parse_suite(data, str(path))


def parse_suite(data: Any, source: str = "suite") -> Suite:
    """A suite from already-parsed YAML; ``source`` prefixes every error message."""
    if not isinstance(data, dict):
        raise SecbenchError(f"{source}: expected a mapping with scenario, options, grid and seeds")
    for key in data:
        if key not in SUITE_KEYS:
            raise SecbenchError(f"{source}: {UnknownNameError('key', str(key)[:80], SUITE_KEYS)}")
    scenario = data.get("scenario")
    if not isinstance(scenario, str):
        raise SecbenchError(f"{source}: scenario must be a scenario name (secbench list scenarios)")
    fields = field_types(registry.get("scenario", scenario).load().Config)
    preset = data.get("preset", "quick")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise SecbenchError(f"{source}: preset: {UnknownNameError('preset', str(preset)[:80], PRESETS)}")
    options = _options(data.get("options", {}), fields, f"{source}: options")
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise SecbenchError(f"{source}: grid must map options to lists of values")
    axes = []
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SecbenchError(f"{source}: grid.{name} must be a non-empty list of values")
        axes.append([_options({name: value}, fields, f"{source}: grid.{name}") for value in values])
    runs = data.get("runs", [])
    if not isinstance(runs, list):
        raise SecbenchError(f"{source}: runs must be a list of option mappings")
    listed = [_options(run, fields, f"{source}: runs[{i}]") for i, run in enumerate(runs)]
    points = [{k: v for part in point for k, v in part.items()} for point in itertools.product(*axes)] if axes else []
    combos = tuple({**options, **point} for point in [*points, *listed]) or (dict(options),)
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(_is(int, s) and s >= 0 for s in seeds):
        raise SecbenchError(f"{source}: seeds must be a non-empty list of non-negative integers, got {str(seeds)[:80]}")
    device = data.get("device", "auto")
    if not isinstance(device, str) or device not in ("auto", "cpu", "cuda"):
        raise SecbenchError(f"{source}: device must be auto, cpu or cuda")
    return Suite(scenario, preset, combos, tuple(dict.fromkeys(seeds)), device)


def expand(suite: Suite, device_type: str) -> list[RunSpec]:
    """Every run of ``suite`` (each combo resolved and expanded by its scenario), without duplicates."""
    from secbench.commands import expand_runs

    scenario_cls = registry.get("scenario", suite.scenario).load()
    specs: dict[str, RunSpec] = {}
    for number, combo in enumerate(suite.combos):
        try:
            runs = expand_runs(scenario_cls, suite.preset, list(suite.seeds), device_type, combo)
        except SecbenchError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in combo.items())[:120]
            raise SecbenchError(f"suite run #{number + 1} ({shown}): {exc}") from exc
        specs.update((spec.config_hash, spec) for spec in runs)
    return list(specs.values())


def states(specs: Iterable[RunSpec], out_dir: Path) -> dict[str, tuple[str, str]]:
    """``run_id`` → (state, reason) for each spec: its latest record decides done or failed; a run with a
    live worker's ``.partial`` folder is running; anything else (never run, or killed) is pending."""
    done: set[str] = set()
    failed: dict[str, str] = {}  # the latest failure's reason
    if store.results_path(out_dir).exists():
        for record in store.load_records(out_dir):
            if record["status"] == "ok":
                done.add(record["config_hash"])
            else:
                failed[record["config_hash"]] = str(record.get("reason") or "")
    out: dict[str, tuple[str, str]] = {}
    for spec in specs:
        if spec.config_hash in done:
            out[spec.run_id] = ("done", "")
        elif running(out_dir / f"{spec.run_id}.partial"):
            out[spec.run_id] = ("running", "")
        elif spec.config_hash in failed:
            out[spec.run_id] = ("failed", failed[spec.config_hash])
        else:
            out[spec.run_id] = ("pending", "")
    return out


def running(partial: Path) -> bool:
    """Whether the process that owns ``partial`` (its ``.owner`` file: host and pid) is alive."""
    try:
        host, pid = (partial / ".owner").read_text().split()
        if host != os.uname().nodename:
            return True  # another machine's worker (Slurm): trust the folder
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def _options(raw: Any, fields: dict[str, type], where: str) -> dict[str, Any]:
    """Option overrides, by config field name (``attack_options``) or flag spelling (``attack-options``)."""
    if not isinstance(raw, dict):
        raise SecbenchError(f"{where} must be a mapping of options to values")
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise SecbenchError(f"{where}: {UnknownNameError('option', str(key)[:80], fields)}")
        kind = fields[name]
        if not (_is(kind, value) or kind is float and _is(int, value)):
            raise SecbenchError(f"{where}: {option_flag(name)} takes a {kind.__name__}, got {str(value)[:80]!r} "
                                f"({type(value).__name__})")
        out[name] = float(value) if kind is float else value
    return out


def _is(kind: type, value: Any) -> bool:
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
