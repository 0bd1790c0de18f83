"""The results store: one JSON line per finished or failed run in ``DIR/results.jsonl``.

Appends hold an exclusive file lock and write the whole line with a single ``write`` followed by
``fsync``, so several processes can share one file and a crash never leaves half a record that
a later reader would mistake for a result. Artifacts of a run live in ``DIR/<run_id>/``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from filelock import FileLock

from secbench.errors import SecbenchError

SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"
# One top-level key per dimension, so a DataFrame of records gets one column each.
IDENTITY_FIELDS = ("scenario", "preset", "dataset", "model", "method", "attack", "defense", "seed")
REQUIRED_FIELDS = ("schema_version", "run_id", "status", "scenario", "seed", "metrics", "config", "config_hash")


def results_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / RESULTS_FILE


def append(out_dir: str | Path, record: dict[str, Any]) -> None:
    """Atomically append ``record`` to ``out_dir/results.jsonl`` (creating the folder)."""
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise ValueError(f"record lacks {missing}")
    path = results_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
    with FileLock(str(path) + ".lock"):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)


def load_records(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every well-formed record in ``out_dir``; lines that do not parse are skipped with a warning."""
    path = results_path(out_dir)
    if not Path(out_dir).is_dir():
        raise SecbenchError(f"no results folder {out_dir}; run `secbench run ... --out {out_dir}` first")
    if not path.exists():
        return []
    records, bad = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(record, dict) and all(k in record for k in REQUIRED_FIELDS):
                records.append(record)
            else:
                bad += 1
    if bad:
        warnings.warn(f"{path}: skipped {bad} malformed line(s)", stacklevel=2)
    return records


def find_finished(out_dir: str | Path, config_hash: str) -> dict[str, Any] | None:
    """The latest successful record with ``config_hash``, if any (the run is then cached)."""
    if not results_path(out_dir).exists():
        return None
    done = [r for r in load_records(out_dir) if r["config_hash"] == config_hash and r["status"] == "ok"]
    return done[-1] if done else None
