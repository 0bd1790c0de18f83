"""Multi-process training through the one ``engine.fit``: two gloo processes on CPU against one process.

Each rank trains on its half of every batch and DDP averages the gradients, so the step is the full
batch's mean gradient; only BatchNorm differs (it normalises each half on its own; SyncBatchNorm needs
CUDA). Tolerances below are what that difference costs on these runs, measured: see the asserts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from secbench import distributed, store
from secbench.data import load_dataset
from secbench.engine import TrainConfig, fit

CFG = TrainConfig(epochs=3, batch_size=32, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=0.0,
                  schedule="cosine", warmup=0.0, augment=("crop", "flip"), label_smoothing=0.0, precise_bn=0)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def _train(world: int = 1, rank: int = 0, port: int = 0, out: str = "") -> None | dict:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    data = load_dataset("digits", n_train=256, n_test=64)
    model = _net()
    history = fit(model, data.train, CFG, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    result = {"loss": history["loss"], "acc": history["acc"], "weights": weights.tolist()}
    if world == 1:
        return result
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    single = _train()
    out = tmp_path / "rank0.json"
    ctx = mp.get_context("spawn")
    port = _free_port()
    workers = [ctx.Process(target=_train, args=(2, r, port, str(out))) for r in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    double = json.loads(out.read_text())
    # no BatchNorm in this net: the same steps up to float32 summation order
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-4)
    assert double["acc"] == pytest.approx(single["acc"], abs=1e-9)
    assert torch.tensor(double["weights"]).sub(torch.tensor(single["weights"])).abs().max() < 1e-4
    assert distributed.world_size() == 1 and distributed.is_main()


def test_torchrun_records_once_from_rank_0(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["run", "clean", "--preset", "smoke", "--dataset", "digits", "--device", "cpu", "--n-train", "256",
            "--batch-size", "32", "--epochs", "2"]
    subprocess.run([sys.executable, "-m", "secbench", *args, "--out", str(tmp_path / "one")], env=env, check=True,
                   capture_output=True, timeout=300)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(_free_port()), "-m", "secbench", *args, "--out", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (one,), (two,) = store.load_records(tmp_path / "one"), store.load_records(tmp_path / "two")
    assert two["provenance"]["world_size"] == 2 and one["provenance"]["world_size"] == 1
    assert two["config_hash"] == one["config_hash"]
    # cnn-s has BatchNorm, normalised per half-batch under DDP: close, not equal
    assert abs(two["metrics"]["clean_acc"] - one["metrics"]["clean_acc"]) < 0.1
    assert abs(two["metrics"]["train_loss"] - one["metrics"]["train_loss"]) < 0.05 * one["metrics"]["train_loss"]
    assert [p.name for p in (tmp_path / "two").iterdir() if p.name.endswith(".partial")] == []
