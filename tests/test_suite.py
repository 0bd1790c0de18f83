"""Suites: validation before anything runs, skipping what is done, failures that do not stop the grid,
the local and submitit launchers, status, and a kill -9 at any point losing and duplicating nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from secbench import store
from secbench.cli import cli
from secbench.launch import launch_submitit
from secbench.suite import expand, load_suite, states

SMOKE_SUITE = """\
scenario: clean
preset: smoke
device: cpu
options: {dataset: digits, n_train: 120, n_test: 60}
grid:
  lr: [0.05, 0.1]
seeds: [0, 1]
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("scenario: clena\n", ["unknown scenario 'clena'", "did you mean 'clean'"]),
        ("scenario: clean\ngrids: {lr: [1]}\n", ["unknown key 'grids'"]),
        ("scenario: clean\noptions: {learning_rate: 0.1}\n", ["options", "unknown option 'learning_rate'"]),
        ("scenario: clean\ngrid: {lr: [0.1, fast]}\n", ["grid.lr", "--lr takes a float", "'fast'"]),
        ("scenario: clean\ngrid: {epochs: [1, 2.5]}\n", ["grid.epochs", "--epochs takes a int"]),
        ("scenario: clean\ngrid: {epochs: [true]}\n", ["grid.epochs"]),
        ("scenario: clean\ngrid: {lr: []}\n", ["grid.lr must be a non-empty list"]),
        ("scenario: clean\ngrid: {lr: 0.1}\n", ["grid.lr must be a non-empty list"]),
        ("scenario: clean\ngrid: [lr]\n", ["grid must map"]),
        ("scenario: clean\nruns: [{model: nope}]\n", ["suite run #1", "unknown model 'nope'"]),
        ("scenario: clean\ngrid: {lr: [0.1, -1]}\n", ["suite run #2", "--lr must be above 0"]),
        ("scenario: clean\nseeds: []\n", ["seeds must be a non-empty list"]),
        ("scenario: clean\nseeds: [0, -1]\n", ["seeds"]),
        ("scenario: clean\npreset: fast\n", ["unknown preset 'fast'"]),
        ("scenario: clean\npreset: [quick]\n", ["unknown preset"]),
        ("scenario: 3\n", ["scenario must be a scenario name"]),
        ("scenario: clean\noptions: [lr]\n", ["options must be a mapping"]),
        ("scenario: clean\nruns: {lr: 1}\n", ["runs must be a list"]),
        ("scenario: clean\nruns: [5]\n", ["runs[0] must be a mapping"]),
        ("scenario: clean\ndevice: tpu\n", ["device"]),
        ("- clean\n", ["expected a mapping"]),
        ("scenario: [clean\n", ["not valid YAML"]),
        ("grid: {lr: [1]}\n", ["scenario must be a scenario name"]),
    ],
)
def test_malformed_suites_are_one_error_before_any_run(text, words, tmp_path):
    result = invoke("suite", str(write(tmp_path, text)), "--out", str(tmp_path / "runs"))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "runs").exists()


def test_not_utf8_suite(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_bytes(b"\xff\xfe scenario")
    result = invoke("suite", str(path))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr


def test_grid_and_list_expand_to_distinct_hashed_runs(tmp_path):
    suite = load_suite(write(tmp_path, SMOKE_SUITE + "runs: [{lr: 0.05}, {lr: 0.2, epochs: 2}]\n"))
    specs = expand(suite, "cpu")
    # grid lr 0.05 / 0.1, listed 0.05 (the same run again) and 0.2: three configs, two seeds each
    assert len(specs) == 6 and len({s.config_hash for s in specs}) == 6
    assert sorted({s.config["lr"] for s in specs}) == [0.05, 0.1, 0.2]


def test_ten_thousand_runs_expand_and_check_quickly(tmp_path):
    text = "scenario: clean\npreset: smoke\ndevice: cpu\ngrid:\n  lr: [" + ", ".join(
        f"{0.001 * i:.3f}" for i in range(1, 101)) + "]\n  epochs: [" + ", ".join(map(str, range(1, 11))) + \
        "]\nseeds: [" + ", ".join(map(str, range(10))) + "]\n"
    started = time.perf_counter()
    specs = expand(load_suite(write(tmp_path, text)), "cpu")
    (tmp_path / "runs").mkdir()
    assert {state for state, _ in states(specs, tmp_path / "runs").values()} == {"pending"}
    assert len(specs) == 10_000
    assert time.perf_counter() - started < 10  # the benchmark measures it; here only an upper bound


def test_local_suite_runs_skips_done_and_records_failures(tmp_path):
    out = tmp_path / "runs"
    # SECBENCH_DATA is empty, so the cifar10 runs fail (missing data) while the digits runs go on
    suite = write(tmp_path, SMOKE_SUITE + "runs: [{dataset: cifar10}]\n")
    dry = invoke("suite", str(suite), "--dry-run", "--out", str(out))
    assert dry.exit_code == 0 and "6 pending" in dry.stdout
    env = {**os.environ, "SECBENCH_DATA": str(tmp_path / "no-data"), "OMP_NUM_THREADS": "1"}
    first = subprocess.run([sys.executable, "-m", "secbench", "suite", str(suite), "--jobs", "2", "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 1, first.stderr
    assert "cifar10 not found" in first.stderr and "Traceback" not in first.stderr
    records = store.load_records(out)
    assert sorted(r["status"] for r in records) == ["failed", "failed", "ok", "ok", "ok", "ok"]
    status = invoke("status", str(out), "--suite", str(suite), "--format", "json")
    rows = json.loads(status.stdout)
    assert sorted(row["state"] for row in rows) == ["done"] * 4 + ["failed"] * 2
    assert all("not found" in row["reason"] for row in rows if row["state"] == "failed")
    table = invoke("status", str(out))
    assert table.exit_code == 0 and "4 done, 2 failed" in table.stdout
    again = invoke("suite", str(write(tmp_path, SMOKE_SUITE, "done.yaml")), "--out", str(out))
    assert again.exit_code == 0 and "0 to run" in again.stderr
    assert len(store.load_records(out)) == 6


def test_submitit_local_executor_lands_in_the_same_store(tmp_path):
    submitit = pytest.importorskip("submitit")
    suite = load_suite(write(tmp_path, SMOKE_SUITE.replace("lr: [0.05, 0.1]", "lr: [0.05]")))
    specs = expand(suite, "cpu")
    executor = submitit.LocalExecutor(folder=str(tmp_path / "logs"))
    executor.update_parameters(timeout_min=5)
    seen = []
    outcomes = launch_submitit(specs, tmp_path / "runs", "cpu", executor, seen.append)
    assert [status for _, status, _ in outcomes] == ["ok", "ok"] and seen == outcomes
    assert sorted(r["seed"] for r in store.load_records(tmp_path / "runs")) == [0, 1]
    assert any((tmp_path / "logs").glob("*_log.out"))  # one log per array task


def _workers(pid: int) -> list[int]:
    """The suite's spawned worker processes (not multiprocessing's resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except OSError:
            continue
    return out


def test_kill_9_at_any_point_then_resume_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "runs"
    suite = write(tmp_path, SMOKE_SUITE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "secbench", "suite", str(suite), "--jobs", "2", "--out", str(out)]
    for delay in (3.0, 6.0):  # during worker start-up, and once runs are being written
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)  # the suite and its workers, mid-write or not
        process.wait()
    # then one worker alone: the suite reports its runs as not finished and exits 1, never a traceback
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    worker = None
    while worker is None and process.poll() is None:
        worker = next(iter(_workers(process.pid)), None)
        time.sleep(0.1)
    if worker is not None:
        os.kill(worker, signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode in (0, 1) and "Traceback" not in stderr, stderr
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    lines = store.results_path(out).read_text().splitlines()
    records = [json.loads(line) for line in lines]  # no torn line
    assert sorted((r["config"]["lr"], r["seed"]) for r in records) == sorted(
        (lr, seed) for lr in (0.05, 0.1) for seed in (0, 1))  # each run exactly once
    assert not list(out.glob("*.partial"))


@pytest.mark.parametrize("path", sorted(Path("examples/suites").glob("*.yaml")), ids=lambda p: p.stem)
def test_example_suites_expand(path):
    specs = expand(load_suite(path), "cpu")
    assert len(specs) >= 12 and len({s.config_hash for s in specs}) == len(specs)


def test_ctrl_c_ends_the_workers_and_leaves_no_partial_run(tmp_path):
    out = tmp_path / "runs"
    suite = write(tmp_path, SMOKE_SUITE.replace("n_train: 120", "n_train: 1000").replace("seeds: [0, 1]", "seeds: [0]"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "secbench", "suite", str(suite), "--jobs", "2", "--out", str(out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.time() + 120
    while not list(out.glob("*.partial")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole process group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert not list(out.glob("*.partial"))
    finished = store.load_records(out) if store.results_path(out).exists() else []
    assert all(r["status"] == "ok" for r in finished)
    assert subprocess.run(command, env=env, capture_output=True, timeout=300).returncode == 0
    assert len(store.load_records(out)) == 2


def test_two_suites_writing_one_store_at_once_stay_intact(tmp_path):
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    suites = [write(tmp_path, SMOKE_SUITE.replace("lr: [0.05, 0.1]", f"lr: [{lr}]"), f"{i}.yaml")
              for i, lr in enumerate((0.03, 0.07))]
    processes = [subprocess.Popen([sys.executable, "-m", "secbench", "suite", str(s), "--jobs", "1", "--out", str(out)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for s in suites]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    records = [json.loads(line) for line in store.results_path(out).read_text().splitlines()]
    assert sorted((r["config"]["lr"], r["seed"]) for r in records) == [(0.03, 0), (0.03, 1), (0.07, 0), (0.07, 1)]


@pytest.mark.skipif(bool(shutil.which("sbatch")), reason="a Slurm cluster would really get the jobs")
def test_slurm_launcher_off_a_cluster_is_one_error(tmp_path):
    result = invoke("suite", str(write(tmp_path, SMOKE_SUITE)), "--launcher", "slurm", "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith("error: --launcher slurm needs")
