import errno
import json
import multiprocessing as mp
import os

import pytest

from secbench import store
from secbench.errors import SecbenchError


def _record(i: int, **extra) -> dict:
    return {"schema_version": 1, "run_id": f"r{i}", "status": "ok", "scenario": "clean", "seed": i,
            "metrics": {"clean_acc": i / 100}, "config": {"pad": "x" * 2000}, "config_hash": f"h{i}", **extra}


def _writer(out_dir: str, worker: int, count: int) -> None:
    for k in range(count):
        store.append(out_dir, _record(worker * 1000 + k))


def test_concurrent_writers_keep_every_record_intact(tmp_path):
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
        assert p.exitcode == 0
    lines = store.results_path(tmp_path).read_text().splitlines()
    assert len(lines) == 100
    records = [json.loads(line) for line in lines]  # every line parses: no interleaving
    assert sorted(r["seed"] for r in records) == sorted(w * 1000 + k for w in range(4) for k in range(25))


def test_truncated_line_is_skipped_with_warning(tmp_path):
    store.append(tmp_path, _record(1))
    with open(store.results_path(tmp_path), "a") as fh:
        fh.write('{"schema_version": 1, "run_id": "half')  # what a crash mid-write by another tool would leave
    with pytest.warns(UserWarning, match=r"skipped line\(s\) 2: not a results record"):
        records = store.load_records(tmp_path)
    assert [r["run_id"] for r in records] == ["r1"]


def test_find_finished_ignores_failed_runs(tmp_path):
    store.append(tmp_path, _record(1, config_hash="same", status="failed"))
    assert store.find_finished(tmp_path, "same") is None
    store.append(tmp_path, _record(2, config_hash="same"))
    assert store.find_finished(tmp_path, "same")["run_id"] == "r2"


def test_incomplete_record_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        store.append(tmp_path, {"run_id": "x"})
    with pytest.raises(ValueError):  # NaN is not JSON: a silent bad number must not be stored
        store.append(tmp_path, _record(3, metrics={"clean_acc": float("nan")}))


def test_a_torn_last_line_cannot_swallow_the_next_record(tmp_path):
    store.append(tmp_path, _record(1))
    with open(store.results_path(tmp_path), "a") as fh:
        fh.write('{"schema_version": 1, "run_id": "half')  # no newline: the next append must not continue it
    store.append(tmp_path, _record(2))
    with pytest.warns(UserWarning, match=r"skipped line\(s\) 2"):
        assert [r["run_id"] for r in store.load_records(tmp_path)] == ["r1", "r2"]


@pytest.mark.parametrize("written", [0, 100])
def test_disk_full_during_an_append_leaves_no_partial_record(tmp_path, monkeypatch, written):
    store.append(tmp_path, _record(1))
    before = store.results_path(tmp_path).read_bytes()
    real_write = os.write

    def full(fd, data):
        real_write(fd, data[:written])  # what a filling disk accepts before it refuses
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "write", full)
    with pytest.raises(SecbenchError, match="cannot record run r2 .* No space left on device; free space"):
        store.append(tmp_path, _record(2))
    monkeypatch.undo()
    assert store.results_path(tmp_path).read_bytes() == before
    store.append(tmp_path, _record(3))
    assert [r["run_id"] for r in store.load_records(tmp_path)] == ["r1", "r3"]
