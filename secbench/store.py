"""The results store: one JSON line per finished or failed run in ``DIR/results.jsonl``.

Appends hold an exclusive file lock and write the whole line with a single ``write`` followed by
``fsync``, so several processes can share one file and a crash never leaves half a record that
a later reader would mistake for a result. Artifacts of a run live in ``DIR/<run_id>/``.
"""

from __future__ import annotations

import errno
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
# Every record has these fields, of these types; a line without them is not a record.
FIELD_TYPES = {"schema_version": int, "run_id": str, "status": str, "scenario": str, "seed": int, "metrics": dict,
               "config": dict, "config_hash": str}
REQUIRED_FIELDS = tuple(FIELD_TYPES)


def results_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / RESULTS_FILE


def append(out_dir: str | Path, record: dict[str, Any]) -> None:
    """Atomically append ``record`` to ``out_dir/results.jsonl`` (creating the folder).

    A write that fails part-way (a full disk) is cut back off, so the file never holds half a record, and
    a torn last line left by something else is closed first, so that it cannot swallow this record."""
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise ValueError(f"record lacks {missing}")
    path = results_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
    with FileLock(str(path) + ".lock"):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, size)
                raise SecbenchError(f"cannot record run {record['run_id']} in {path}: {exc.strerror or exc}; "
                                    "free space there and rerun (the run was not recorded)") from exc
        finally:
            os.close(fd)


def load_records(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every well-formed record in ``out_dir``. A line that is not one (torn, binary, JSON of another shape)
    is skipped with a warning naming its number; a record of a newer schema is refused."""
    path = results_path(out_dir)
    if not Path(out_dir).is_dir():
        raise SecbenchError(f"no results folder {out_dir}; run `secbench run ... --out {out_dir}` first")
    if not path.exists():
        return []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SecbenchError(f"cannot read {path}: {exc.strerror}") from exc
    records, bad = [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        record = _parse_record(line)
        if record is None:
            bad.append(number)
            continue
        if record["schema_version"] > SCHEMA_VERSION:
            raise SecbenchError(f"{path} line {number} was written by a newer secbench (schema_version "
                                f"{record['schema_version']}, this one reads {SCHEMA_VERSION}); upgrade secbench")
        records.append(record)
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"{path}: skipped line(s) {shown}: not a results record", stacklevel=2)
    return records


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on one line of the store, or None when it is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED_FIELDS):
        return None
    if any(not isinstance(record[k], kind) or isinstance(record[k], bool) for k, kind in FIELD_TYPES.items()):
        return None
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in record["metrics"].values()):
        return None
    return record


def find_finished(out_dir: str | Path, config_hash: str) -> dict[str, Any] | None:
    """The latest successful record with ``config_hash``, if any (the run is then cached)."""
    if not results_path(out_dir).exists():
        return None
    done = [r for r in load_records(out_dir) if r["config_hash"] == config_hash and r["status"] == "ok"]
    return done[-1] if done else None
