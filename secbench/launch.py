"""Launchers for a suite's pending runs: a local process pool, or Slurm job arrays through submitit.

Both call :func:`run_one` in a fresh process per worker or array task, so each run goes through the
one runner (cache check, atomic record, artifacts) whichever launcher ran it, and all land in one store.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from secbench.errors import SecbenchError
from secbench.runner import RunSpec

Outcome = tuple[str, str, str]  # run_id, status (ok | failed | cached), reason


_RUNNING = False  # whether this worker is inside a run (see _stop)


def run_one(spec: RunSpec, out_dir: str, device: str) -> Outcome:
    """Execute one run in this process; a failure of any kind is recorded (``failed``) and returned."""
    from secbench import registry
    from secbench.engine import select_device
    from secbench.runner import execute

    global _RUNNING
    scenario = registry.get("scenario", spec.scenario).load()()
    _RUNNING = True
    try:
        record, cached = execute(scenario, spec, Path(out_dir), device=select_device(device), record_user_errors=True)
    finally:
        _RUNNING = False
    return spec.run_id, "cached" if cached else record["status"], str(record.get("reason") or "")


def _start_worker(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, _stop)


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM from the suite's process: a run in progress is interrupted (the runner then removes its
    half-written artifacts and records nothing); an idle worker just exits."""
    if _RUNNING:
        raise KeyboardInterrupt
    raise SystemExit(0)


def launch_local(specs: Sequence[RunSpec], out_dir: Path, jobs: int, device: str, threads: int,
                 on_done: Callable[[Outcome], Any]) -> list[Outcome]:
    """Run ``specs`` on ``jobs`` worker processes of ``threads`` torch threads each; ``on_done`` sees each
    outcome as it arrives. Ctrl-C cancels the runs not yet started; a run it interrupts records nothing."""
    outcomes: list[Outcome] = []
    context = mp.get_context("spawn")  # a fork would copy this process's torch thread pool
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(threads,))
    # Workers start with SIGINT ignored (the disposition survives exec), so a terminal's Ctrl-C reaches this
    # process alone, even mid-import in a worker; it then stops the workers with SIGTERM.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        futures = {pool.submit(run_one, spec, str(out_dir), device): spec for spec in specs}
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        waiting = set(futures)
        while waiting:
            finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    outcome = future.result()
                except BrokenProcessPool:  # a worker was killed: its run and the queued ones stay pending
                    outcome = (futures[future].run_id, "failed", "a worker process died (killed?) before this run "
                                                                 "finished; run the suite again to resume")
                outcomes.append(outcome)
                on_done(outcome)
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes


def launch_submitit(specs: Sequence[RunSpec], out_dir: Path, device: str, executor: Any,
                    on_done: Callable[[Outcome], Any]) -> list[Outcome]:
    """Submit ``specs`` as one job array of ``executor`` (a ``submitit`` executor, Slurm or local) and
    wait for every task; each task's logs are in the executor's folder."""
    jobs = executor.map_array(run_one, list(specs), [str(out_dir)] * len(specs), [device] * len(specs))
    outcomes = []
    for spec, job in zip(specs, jobs, strict=True):
        try:
            outcome = job.result()
        except Exception as exc:  # the task died (killed, out of memory, time limit): pending again next time
            outcome = (spec.run_id, "failed", f"array task {job.job_id}: {type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())[:200]}")
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes


def slurm_executor(folder: Path, *, partition: str | None, time_min: int, gpus: int, cpus: int, mem_gb: int,
                   parallelism: int) -> Any:
    """A submitit executor for Slurm job arrays (``sbatch --array``), logs under ``folder``."""
    import submitit

    if not (shutil.which("sbatch") and shutil.which("srun")):
        raise SecbenchError("--launcher slurm needs Slurm's sbatch and srun on PATH: run it on a cluster's login "
                            "node, or use --launcher local")

    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    executor.update_parameters(timeout_min=time_min, gpus_per_node=gpus, cpus_per_task=cpus, mem_gb=mem_gb,
                               slurm_array_parallelism=parallelism, name="secbench",
                               **({"slurm_partition": partition} if partition else {}))
    return executor
