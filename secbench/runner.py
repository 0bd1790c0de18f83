"""Executes one run: seeds, caches by config hash, times, records, and keeps artifacts.

Artifacts are written to ``DIR/<run_id>.partial/`` and renamed when the run finishes, and the
record is appended last, so an interrupted run leaves neither a record nor a half-filled
artifact folder behind, and simply runs again next time.
"""

from __future__ import annotations

import errno
import math
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from secbench import distributed, provenance, store
from secbench.config import config_hash
from secbench.engine import seed_everything
from secbench.errors import SecbenchError, TrainingDiverged
from secbench.progress import NullProgress, Progress
from secbench.scenarios.base import RunContext, Scenario

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result."""

    scenario: str
    scenario_version: int
    preset: str
    seed: int
    config: dict[str, Any]

    @property
    def config_hash(self) -> str:
        return config_hash({"scenario": self.scenario, "scenario_version": self.scenario_version,
                            "preset": self.preset, "seed": self.seed, "config": self.config})

    @property
    def run_id(self) -> str:
        return f"{self.scenario}-{self.config_hash.split(':')[1][:12]}"


def execute(scenario: Scenario, spec: RunSpec, out_dir: Path, *, device: torch.device, force: bool = False,
            progress: Progress | None = None, record_user_errors: bool = False) -> tuple[dict[str, Any], bool]:
    """Run ``spec`` unless a finished record exists (then return it, ``cached=True``).

    A diverged or crashed run is recorded with ``status: failed`` and its reason; so is a user error
    (missing data) when ``record_user_errors`` (a suite goes on with its other runs), which otherwise
    propagates unrecorded, as an interrupt always does.
    """
    out_dir = Path(out_dir)
    if not force and (done := store.find_finished(out_dir, spec.config_hash)):
        return done, True
    main = distributed.is_main()  # under torchrun only rank 0 keeps artifacts and records the run
    partial, final = out_dir / f"{spec.run_id}.partial", out_dir / spec.run_id
    if not main:
        partial = Path(tempfile.mkdtemp(prefix=f"{spec.run_id}-rank{distributed.rank()}-"))
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / ".owner").write_text(f"{os.uname().nodename} {os.getpid()}")  # `secbench status`: running
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx = RunContext(device=device, seed=spec.seed, generator=seed_everything(spec.seed), artifacts=partial,
                     cache=out_dir / "cache", progress=progress or NullProgress())
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    status, reason, outcome = "ok", None, None
    try:
        outcome = scenario.run(spec.config, ctx)
        bad = sorted(k for k, v in outcome.metrics.items() if not math.isfinite(v))
        if bad:
            raise TrainingDiverged(f"non-finite metric(s) {', '.join(bad)}")
    except TrainingDiverged as exc:
        status, reason = "failed", str(exc)
    except SecbenchError as exc:  # the user's input is wrong (missing data, bad option)
        if not record_user_errors:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        status, reason = "failed", str(exc)
    except Exception as exc:  # a crash is recorded, never lost; the CLI prints the one-line reason
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:  # the machine's fault, not the run's: retry later
            shutil.rmtree(partial, ignore_errors=True)
            raise SecbenchError(f"disk full while run {spec.run_id} wrote to {out_dir} ({exc.strerror}); free space "
                                "and rerun (nothing was recorded)") from exc
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    except BaseException:  # interrupted: leave nothing half-done behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    wall = time.perf_counter() - clock

    record = {
        "schema_version": store.SCHEMA_VERSION,
        "run_id": spec.run_id,
        "status": status,
        "reason": reason,
        "scenario": spec.scenario,
        "scenario_version": spec.scenario_version,
        "preset": spec.preset,
        "seed": spec.seed,
        **scenario.identity(spec.config, spec.preset),
        "metrics": outcome.metrics if status == "ok" else {},
        "higher_is_better": outcome.higher_is_better if outcome else {},
        "n": outcome.n if outcome else 0,
        "config": spec.config,
        "derived": outcome.derived if outcome else {},
        "config_hash": spec.config_hash,
        "provenance": {**provenance.collect(device), "world_size": distributed.world_size(),
                       "dataset_sha256": outcome.dataset_fingerprint if outcome else None},
        "timing": {
            "started": started.isoformat(timespec="seconds"),
            "wall_s": round(wall, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_cuda_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        },
        "artifacts": str(final.relative_to(out_dir)),
    }
    if not main:
        shutil.rmtree(partial, ignore_errors=True)
        return record, False
    shutil.rmtree(final, ignore_errors=True)
    (partial / ".owner").unlink()
    partial.rename(final)
    store.append(out_dir, record)
    return record, False
