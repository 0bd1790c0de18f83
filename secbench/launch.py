"""Launchers for a suite's pending runs: a local process pool, or Slurm job arrays through submitit.

Both call :func:`run_one` in a fresh process per worker or array task, so each run goes through the
one runner (cache check, atomic record, artifacts) whichever launcher ran it, and all land in one store.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from secbench.runner import RunSpec

Outcome = tuple[str, str, str]  # run_id, status (ok | failed | cached), reason


def run_one(spec: RunSpec, out_dir: str, device: str) -> Outcome:
    """Execute one run in this process; a failure of any kind is recorded (``failed``) and returned."""
    from secbench import registry
    from secbench.engine import select_device
    from secbench.runner import execute

    scenario = registry.get("scenario", spec.scenario).load()()
    record, cached = execute(scenario, spec, Path(out_dir), device=select_device(device), record_user_errors=True)
    return spec.run_id, "cached" if cached else record["status"], str(record.get("reason") or "")


def _limit_threads(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def launch_local(specs: Sequence[RunSpec], out_dir: Path, jobs: int, device: str, threads: int,
                 on_done: Callable[[Outcome], Any]) -> list[Outcome]:
    """Run ``specs`` on ``jobs`` worker processes of ``threads`` torch threads each; ``on_done`` sees each
    outcome as it arrives. Ctrl-C cancels the runs not yet started; a run it interrupts records nothing."""
    outcomes: list[Outcome] = []
    context = mp.get_context("spawn")  # a fork would copy this process's torch thread pool
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, spec, str(out_dir), device) for spec in specs}
        try:
            while futures:
                finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcomes.append(future.result())
                    on_done(outcomes[-1])
        except BaseException:  # Ctrl-C: cancel what has not started, and interrupt what has, so that each
            for process in list(getattr(pool, "_processes", {}).values()):  # run cleans up after itself
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
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

    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    executor.update_parameters(timeout_min=time_min, gpus_per_node=gpus, cpus_per_task=cpus, mem_gb=mem_gb,
                               slurm_array_parallelism=parallelism, name="secbench",
                               **({"slurm_partition": partition} if partition else {}))
    return executor
